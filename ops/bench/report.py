"""The report: ``report.json``, ``report.png`` (matplotlib, Agg) and a summary table."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib.metadata import version
from pathlib import Path

import psutil

GIB = 1024**3


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
        "python": platform.python_version(),
        "celery": version("celery"),
        "kombu": version("kombu"),
        "redis_py": version("redis"),
        "boto3": version("boto3"),
        "platform": platform.platform(),
        "load_average": [round(os.getloadavg()[0], 2)],  # the end's is appended after the run
    }


def write_json(report: dict, out_dir: Path) -> Path:
    path = out_dir / "report.json"
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    return path


def summary_rows(report: dict) -> list[tuple[str, str]]:
    """(figure, value) lines for the scenarios that ran."""
    s = report["scenarios"]
    return [row for key, rows in _ROWS.items() if key in s for row in rows(s)]


def _rows_1(s: dict) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    f = s["1"]["figures"]
    rows += [
        ("1 jobs/s (ceiling/tasks-per-job)", f"{f['jobs_per_s']} ({f['ceiling_jobs_per_s']})"),
        ("1 e2e p50/p95 s", f"{f['e2e_p50_s']} / {f['e2e_p95_s']}"),
        ("1 store lag p50/p95 s", f"{f['store_lag_p50_s']} / {f['store_lag_p95_s']}"),
        ("1 submits+polls per job", f"{f['provider_submits_per_job']} + "
                                    f"{f['provider_polls_per_job']}"),
        ("1 Celery tasks per job", f"{f['celery_tasks_per_job']}"),
        ("1 CPU ms/job / floor at job rate (x; bound 1.5)",
         f"{f['worker_cpu_ms_per_job']} / {f['floor_cpu_ms_per_job']} "
         f"(x{f['cpu_per_job_vs_floor']})"),
        ("1 ... / floor saturated (x)", f"{f['floor_cpu_ms_per_job_saturated']} "
                                        f"(x{f['cpu_per_job_vs_floor_saturated']})"),
        ("1 peak worker RSS MiB", f"{f['worker_rss_peak_mib']}"),
        ("1 Redis bytes/in-flight job", f"{f['redis_bytes_per_in_flight_job']}"),
        ("1 Celery empty tasks/s", f"{f['celery_ceiling']['tasks_per_s']}"),
    ]
    a = f.get("latency_added")
    if a:
        rows += [("1 paced: added p50 s (bound)", f"{a['added_p50_s']} "
                                                  f"({a['added_bound_at_p50_s']})"),
                 ("1 paced: store lag p95 s (bound 1 s)", f"{a['store_step_p95_s']}"),
                 ("1 paced: provider done->stored p50/p95 s",
                  f"{a['provider_done_to_stored_p50_s']} / "
                  f"{a['provider_done_to_stored_p95_s']}"),
                 ("1 paced: polls per job (1.3)", f"{a['provider_polls_per_job']}")]
    limit = f.get("schedule_frontier")
    if limit:
        rows.append(("1 paced: least poll wait p50 s <= 1.3 polls: ours / any schedule",
                     f"{limit['least_wait_p50_within_polls_bound_s']} / "
                     f"{limit.get('least_wait_p50_any_schedule_s')}"))
    return rows


def _rows_2(s: dict) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    f = s["2"]["figures"]
    rows += [("2 jobs/s vs Q/2", f"{f['jobs_per_s']} ({f['jobs_per_s_vs_ideal']:.0%})"),
             ("2 sustained jobs/s vs Q/2", f"{f['sustained_jobs_per_s']} "
                                           f"({f['sustained_vs_ideal']:.0%})"),
             ("2 polls per job", f"{f['provider_polls_per_job']}"),
             ("2 429s received", f"{f['provider_429s']}")]
    return rows


def _rows_3(s: dict) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    f = s["3"]["figures"]
    for r in f["ours_by_jobs"]:
        rows.append((f"3 {r['jobs']} jobs: ours / naive jobs/s",
                     f"{r['jobs_per_s']} / {f['naive']['jobs_per_s']} (x{r['ratio']})"))
    return rows


def _rows_4(s: dict) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for r in s["4"]["figures"]["by_size"]:
        rows.append((f"4 peak RSS MiB @ {r['result_mib']} MiB result",
                     f"{r['worker_rss_peak_mib']} (child {r['worker_rss_child_peak_mib']})"))
    return rows


def _rows_5(s: dict) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    f = s["5"]["figures"]
    rows += [("5 jobs in flight", f"{f['in_flight']}"),
             ("5 worker RSS bytes/job main (tree)",
              f"{f['worker_main_rss_bytes_per_in_flight_job']} "
              f"({f['worker_rss_bytes_per_in_flight_job']})"),
             ("5 Redis bytes/job", f"{f['redis_bytes_per_in_flight_job']}")]
    return rows


def _rows_6(s: dict) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    f = s["6"]["figures"]
    rows += [("6 executions/job (minimum)", f"{f['task_executions_per_job']} "
                                            f"({f['minimum_executions_per_job']})"),
             ("6 Redis bytes/queued job", f"{f['redis_bytes_per_queued_job']}"),
             ("6 worker RSS MiB (4 processes)", f"{f['worker_rss_peak_mib']}"),
             ("6 failed / paid twice", f"{f['failed']} / {f['paid_twice']}")]
    return rows


def _rows_7(s: dict) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    f = s["7"]["figures"]
    rows += [("7 B p95 wait s: behind A / alone",
              f"{f['b_behind_a_wait_p95_s']} / {f['b_alone_wait_p95_s']} "
              f"(FIFO ~{f['fifo_b_wait_estimate_s']})")]
    return rows


def _rows_8(s: dict) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    f = s["8"]["figures"]
    rows += [("8 paid calls for identical jobs", f"{f['paid_calls']} for {f['jobs']}")]
    return rows


def _rows_9(s: dict) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    f = s["9"]["figures"]
    rows += [("9 credits charged vs cap", f"{f['credits_charged']} / {f['cap_credits']}")]
    return rows


_ROWS = {"1": _rows_1, "2": _rows_2, "3": _rows_3, "4": _rows_4, "5": _rows_5, "6": _rows_6, "7": _rows_7, "8": _rows_8, "9": _rows_9}

def print_summary(report: dict) -> None:
    rows = summary_rows(report)
    width = max((len(name) for name, _ in rows), default=10)
    print(f"\n{'figure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"\n{report['mode']} run, {report['duration_s']} s; report in {report['out_dir']}",
          file=sys.stdout)


def write_chart(report: dict, out_dir: Path) -> Path:
    """Every figure as a ratio to what it is compared to, the reference named beside it;
    then scenario 3's ratio by job count and scenario 4's RSS by result size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["scenarios"]
    bars = ratio_bars(s)
    fig = plt.figure(figsize=(16, max(7, 0.55 * len(bars) + 2.5)))
    grid = fig.add_gridspec(2, 2, width_ratios=[2.3, 1])
    _ratios(fig.add_subplot(grid[:, 0]), bars)
    for ax, (draw, key) in zip([fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 1])],
                               [(_naive_by_jobs, "3"), (_large, "4")], strict=True):
        if key in s:
            draw(ax, s[key]["figures"])
        else:
            ax.set_axis_off()
    m = report["machine"]
    load = m.get("load_average")
    fig.suptitle(f"enhance-queue bench ({report['mode']}): {m['cpus']} cores, "
                 f"{m['memory_gib']} GiB, Python {m['python']}, celery {m['celery']}"
                 + (f"; load average at start {load[0]:.1f}, end {load[1]:.1f}"
                    if load and len(load) > 1 else ""))
    fig.tight_layout()
    path = out_dir / "report.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def ratio_bars(s: dict) -> list[dict]:
    """Each figure as a ratio: label naming the reference, ratio, note with the raw
    figures, the bound if any and which side of it is good."""
    bars: list[dict] = []

    def add(label, ratio, note, bound=None, good="below"):
        bars.append({"label": label, "ratio": ratio, "note": note, "bound": bound,
                     "good": good})

    for key, draw in _BARS.items():
        if key in s:
            draw(s, add)
    return bars


def _bars_1(s: dict, add) -> None:
    f = s["1"]["figures"]
    tpj = f["celery_tasks_per_job"]
    add(f"1 jobs/s: share of Celery's ceiling for {tpj:.2g} tasks/job",
        f["jobs_per_s_vs_ceiling"], f"{f['jobs_per_s']:.3g} of {f['ceiling_jobs_per_s']:.3g}")
    # The CPU bound is read against the floor that prices Celery's tasks at the job run's
    # own rate (what Celery alone costs doing this run's tasks at its pace); the saturated
    # pricing, lower, is drawn beside it without the bound (ops/bench/README.md).
    add("1 worker CPU/job: x the floor (Celery at the job run's rate + bare calls)",
        f["cpu_per_job_vs_floor"],
        f"{f['worker_cpu_ms_per_job']:.3g} of {f['floor_cpu_ms_per_job']:.3g} ms", 1.5)
    add("1 ... x the floor with Celery priced saturated", f["cpu_per_job_vs_floor_saturated"],
        f"{f['worker_cpu_ms_per_job']:.3g} of {f['floor_cpu_ms_per_job_saturated']:.3g} ms")
    a = f.get("latency_added")
    if a:
        add("1 latency added p50 (paced): share of 15 % x provider + 0.5 s",
            a["added_vs_bound"], f"{a['added_p50_s']:.3g} of {a['added_bound_at_p50_s']:.3g} s",
            1.0)
        add("1 store lag p95 (paced, store worker: poll saw it done -> stored): share of 1 s",
            a["store_step_p95_s"] / a["store_lag_bound_s"], f"{a['store_step_p95_s']:.3g} s",
            1.0)
        add("1 provider done -> stored p95 (paced; with the wait for that poll): share of 1 s",
            a["provider_done_to_stored_p95_s"] / a["store_lag_bound_s"],
            f"{a['provider_done_to_stored_p95_s']:.3g} s")
        add("1 polls/job (paced): share of 1.3", a["provider_polls_per_job"] / 1.3,
            f"{a['provider_polls_per_job']:.3g}", 1.0)


def _bars_2(s: dict, add) -> None:
    f = s["2"]["figures"]
    add("2 capped jobs/s, sustained: share of Q/(1+1)", f["sustained_vs_ideal"],
        f"{f['sustained_jobs_per_s']:.3g} of {f['ideal_jobs_per_s']:.3g}", 0.9, "above")
    add("2 capped jobs/s, first enqueue to last stored: share of Q/(1+1)",
        f["jobs_per_s_vs_ideal"], f"{f['jobs_per_s']:.3g} of {f['ideal_jobs_per_s']:.3g}")
    add("2 capped polls/job: share of 1.15", f["provider_polls_per_job"] / 1.15,
        f"{f['provider_polls_per_job']:.3g}; {f['provider_429s']} x 429", 1.0)


def _bars_3(s: dict, add) -> None:
    f = s["3"]["figures"]
    last = f["ours_by_jobs"][-1] if f["ours_by_jobs"] else None
    if last:
        add(f"3 jobs/s at {last['jobs']} jobs: x the naive way (sleeping task)",
            last["ratio"], f"{last['jobs_per_s']:.3g} vs {f['naive']['jobs_per_s']:.3g}",
            f["ratio_target"], "above")


def _bars_4(s: dict, add) -> None:
    r = s["4"]["figures"]["by_size"][-1]
    add(f"4 peak worker RSS, {r['result_mib']:.0f} MiB result: x idle RSS",
        r["worker_rss_peak_mib"] / r["worker_rss_idle_mib"],
        f"{r['worker_rss_peak_mib']:.0f} of {r['worker_rss_idle_mib']:.0f} MiB")


def _bars_5(s: dict, add) -> None:
    f = s["5"]["figures"]
    add(f"5 worker RSS, {f['in_flight']} in flight: x idle RSS",
        f["worker_rss_mib"] / f["worker_rss_idle_mib"],
        f"{f['worker_rss_mib']:.0f} of {f['worker_rss_idle_mib']:.0f} MiB")


def _bars_6(s: dict, add) -> None:
    f = s["6"]["figures"]
    add(f"6 backlog of {f['jobs']:,}: task executions/job: x the pipeline's minimum",
        f["executions_vs_minimum"],
        f"{f['task_executions_per_job']:.3g} of {f['minimum_executions_per_job']:.3g}")


def _bars_7(s: dict, add) -> None:
    f = s["7"]["figures"]
    add(f"7 B's p95 wait behind A's {s['7']['params']['a_jobs']:,}: x B alone",
        f["b_p95_vs_alone"],
        f"{f['b_behind_a_wait_p95_s']:.3g} vs {f['b_alone_wait_p95_s']:.3g} s")
    if f["b_alone_wait_p95_s"]:
        add("7 ... had it been first in, first out: x B alone",
            f["fifo_b_wait_estimate_s"] / f["b_alone_wait_p95_s"],
            f"~{f['fifo_b_wait_estimate_s']:.0f} s (estimate)")


def _bars_8(s: dict, add) -> None:
    f = s["8"]["figures"]
    add(f"8 paid calls, {f['jobs']} enqueues of one image: x the 1 expected",
        f["paid_calls"] / f["expected_paid_calls"], f"{f['paid_calls']}", 1.0)


def _bars_9(s: dict, add) -> None:
    f = s["9"]["figures"]
    add("9 credits charged, 4 processes racing: share of the cap", f["spent_vs_cap"],
        f"{f['credits_charged']:.3g} of {f['cap_credits']:.3g}", 1.0)


_BARS = {"1": _bars_1, "2": _bars_2, "3": _bars_3, "4": _bars_4, "5": _bars_5, "6": _bars_6, "7": _bars_7, "8": _bars_8, "9": _bars_9}

def _ratios(ax, bars: list[dict]) -> None:
    labels = [b["label"] for b in bars][::-1]
    values = [max(b["ratio"], 1e-3) for b in bars][::-1]
    colours = []
    for b in bars[::-1]:
        if b["bound"] is None:
            colours.append("tab:gray")
        else:
            ok = b["ratio"] <= b["bound"] if b["good"] == "below" else b["ratio"] >= b["bound"]
            colours.append("tab:green" if ok else "tab:red")
    y = range(len(bars))
    ax.barh(y, values, color=colours)
    ax.set_yticks(list(y), labels, fontsize=9)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    for i, b in enumerate(bars[::-1]):
        ax.annotate(f"x{b['ratio']:.3g}  ({b['note']})", (values[i], i), xytext=(4, -3),
                    textcoords="offset points", fontsize=8)
        if b["bound"] is not None:
            ax.plot([b["bound"]] * 2, [i - 0.4, i + 0.4], color="black", linewidth=2)
    ax.set_xlim(right=max(values + [1.0]) * 8)
    ax.set_xlabel("ratio to the reference named on each line (log scale); black tick: the "
                  "bound; green: within it, red: not, gray: no bound")
    ax.set_title("every figure against what it is compared to", fontsize=11)


def _naive_by_jobs(ax, f) -> None:
    rows = f["ours_by_jobs"]
    ax.plot([r["jobs"] for r in rows], [r["ratio"] for r in rows], "o-",
            label="ours / naive jobs/s")
    ax.axhline(f["ratio_target"], color="tab:red", linestyle="--",
               label=f"target x{f['ratio_target']:.0f}")
    ax.set_xscale("log")
    ax.set_xlabel("jobs enqueued at once (ours); naive measured once")
    ax.set_ylabel("x the naive way's jobs/s")
    ax.set_ylim(bottom=0)
    ax.set_title("3. ours vs one sleeping task per job, by job count", fontsize=10)
    ax.legend(fontsize=8)


def _large(ax, f) -> None:
    rows = f["by_size"]
    sizes = [r["result_mib"] for r in rows]
    ax.plot(sizes, [r["worker_rss_peak_mib"] / r["worker_rss_idle_mib"] for r in rows], "o-",
            label="worker tree peak / idle")
    ax.plot(sizes, [r["worker_rss_child_peak_mib"] / r["worker_rss_idle_mib"] for r in rows],
            "s-", label="largest child / tree idle")
    ax.set_xlabel("result size (MiB)")
    ax.set_ylabel("x the worker tree's idle RSS")
    ax.set_ylim(bottom=0)
    ax.set_title("4. worker RSS against result size: flat", fontsize=10)
    ax.legend(fontsize=8)
