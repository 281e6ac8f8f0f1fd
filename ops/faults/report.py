"""The fault suite's report: a JSON document and a text table of every scenario."""

from __future__ import annotations

import json
from pathlib import Path

COLUMNS = ("scenario", "run", "enqueued", "succeeded", "failed by code", "not final",
           "paid x2", "paid/job", "recovery", "promises")


def write_json(report: dict, out_dir: Path) -> Path:
    path = out_dir / "report.json"
    path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    return path


def rows(report: dict) -> list[tuple[str, ...]]:
    out = []
    for number, scenario in sorted(report["scenarios"].items()):
        name = f"{number} {scenario['name']}"
        figures = scenario.get("figures", {})
        held = scenario.get("promises", {})
        if "available" in scenario and not scenario["available"]:
            out.append((name, "-", *["-"] * 7, "not available: " + scenario["reason"]))
            continue
        for run, fig in _runs(figures):
            checks = held.get(run, held) if run != "-" else held
            out.append((name, run, *_cells(fig), _held(checks)))
    for number, error in sorted(report["errors"].items()):
        out.append((number, "-", *["-"] * 7, f"ERROR {error[:60]}"))
    return out


def _runs(figures: dict) -> list[tuple[str, dict]]:
    if "enqueued" in figures:
        return [("-", figures)]
    return [(name, fig) for name, fig in figures.items()
            if isinstance(fig, dict) and "enqueued" in fig]


def _cells(fig: dict) -> tuple[str, ...]:
    failed = ", ".join(f"{k} {v}" for k, v in fig["failed_by_code"].items()) or "0"
    paid = fig["paid_submits"] / fig["enqueued"] if fig["enqueued"] else 0.0
    recovery = fig.get("recovery_after_kill_max_s")
    if recovery is None and isinstance(fig.get("recovery"), dict):
        recovery = fig["recovery"]["max_s"]
    return (str(fig["enqueued"]), str(fig["succeeded"]), failed, str(fig["not_final"]),
            str(fig["paid_twice"]), f"{paid:.2f}",
            "-" if recovery is None else f"max {recovery:.1f} s")


def _held(checks: dict) -> str:
    if not checks:
        return "-"
    broken = [k for k, v in checks.items() if k != "held" and v is False]
    return "held" if checks.get("held") else "BROKEN: " + ", ".join(broken)


def table(report: dict) -> str:
    body = [COLUMNS, *rows(report)]
    widths = [max(len(str(r[i])) for r in body) for i in range(len(COLUMNS))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    m = report["machine"]
    head = (f"fault suite ({report['mode']}), {report['started_at']}, {report['duration_s']} s; "
            f"{m['cpus']} CPUs, {m['memory_gib']} GiB, load average at start "
            f"{report.get('load_at_start')} (a shared machine), celery {m['celery']}, "
            f"kombu {m['kombu']}")
    return head + "\n\n" + "\n".join(line.rstrip() for line in [*lines, "", *notes(report)]) + "\n"


def notes(report: dict) -> list[str]:
    """Figures that are not a run of jobs: recovery times, failover promotion time.

    What durable claims cost per job is the benchmark's (``python -m ops.bench``, 10).
    """
    out = recovery_notes(report)
    crash = report["scenarios"].get("1", {}).get("figures", {})
    if "outcome_unknown" in crash:
        out.append(f"crash storm: {crash['worker_kills']} worker kills, {crash['beat_kills']} "
                   f"beat kill; outcome_unknown {crash['outcome_unknown']}, of which "
                   f"{crash['matched_to_a_kill']} had a kill land during their paid call")
    for number, scenario in sorted(report["scenarios"].items()):
        if "rerun" in scenario:  # one scenario's own later run, merged into the report
            out.append(f"scenario {number} is its re-run of {scenario['rerun']['started_at']}: "
                       f"{scenario['rerun']['why']}")
    failover = report["scenarios"].get("7", {}).get("figures", {})
    if "promotion_s" in failover:
        out.append(f"failover: replica promoted {failover['promotion_s']} s after the kill")
    hooks = report["scenarios"].get("8", {}).get("figures", {})
    if "final_events_owed" in hooks:
        out.append(f"webhooks: {hooks['final_events_delivered']} of {hooks['final_events_owed']} "
                   f"final events delivered verified through {hooks['worker_kills']} worker "
                   f"kills and a {hooks['receiver_outage_s']} s receiver outage "
                   f"({hooks['deliveries_answered_503']} attempts answered 503, "
                   f"{hooks['delivered_again_after_2xx']} sent again after a 2xx); first 2xx "
                   f"after the job ended p50 {hooks['end_to_first_2xx_p50_s']:.1f} s, "
                   f"max {hooks['end_to_first_2xx_max_s']:.1f} s")
    return out


def recovery_notes(report: dict) -> list[str]:
    """Seconds until the jobs a fault left moved again, p50 / max, per fault."""
    s = report["scenarios"]
    crash = s.get("1", {}).get("figures", {})
    found = []
    if "recovery_after_kill_max_s" in crash:
        found.append(("a worker SIGKILLed (its own jobs)", crash["recovery_after_kill_p50_s"],
                      crash["recovery_after_kill_max_s"], crash["killed_workers_jobs"]))
    if "recovery_after_kill_past_due_max_s" in crash:
        found.append(("a worker SIGKILLed, from when each job's step was due",
                      crash["recovery_after_kill_past_due_p50_s"],
                      crash["recovery_after_kill_past_due_max_s"], crash["killed_workers_jobs"]))
    for run, what in (("aof_restart", "the Redis restarted from its AOF"),
                      ("empty_broker_restart", "the broker's Redis restarted empty")):
        rec = s.get("2", {}).get("figures", {}).get(run, {}).get("recovery")
        if rec:
            found.append((what, rec["p50_s"], rec["max_s"], rec["jobs"]))
    rec = s.get("7", {}).get("figures", {}).get("recovery")
    if rec:
        found.append(("the Sentinel primary SIGKILLed", rec["p50_s"], rec["max_s"], rec["jobs"]))
    return [f"recovery after {what}: " + (f"p50 {p50:.1f} s, max {top:.1f} s ({jobs} jobs)"
                                          if jobs else "no job was in flight")
            for what, p50, top, jobs in found]


def write_table(report: dict, out_dir: Path) -> Path:
    path = out_dir / "report.txt"
    path.write_text(table(report))
    return path
