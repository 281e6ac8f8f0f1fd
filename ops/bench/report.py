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
    }


def write_json(report: dict, out_dir: Path) -> Path:
    path = out_dir / "report.json"
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    return path


def summary_rows(report: dict) -> list[tuple[str, str]]:
    """(figure, value) lines for the scenarios that ran."""
    s = report["scenarios"]
    rows: list[tuple[str, str]] = []
    if "1" in s:
        f = s["1"]["figures"]
        rows += [
            ("1 jobs/s (ceiling/tasks-per-job)", f"{f['jobs_per_s']} ({f['ceiling_jobs_per_s']})"),
            ("1 e2e p50/p95 s", f"{f['e2e_p50_s']} / {f['e2e_p95_s']}"),
            ("1 store lag p50/p95 s", f"{f['store_lag_p50_s']} / {f['store_lag_p95_s']}"),
            ("1 submits+polls per job", f"{f['provider_submits_per_job']} + "
                                        f"{f['provider_polls_per_job']}"),
            ("1 Celery tasks per job", f"{f['celery_tasks_per_job']}"),
            ("1 CPU ms/job (floor)", f"{f['worker_cpu_ms_per_job']} ({f['floor_cpu_ms_per_job']})"),
            ("1 peak worker RSS MiB", f"{f['worker_rss_peak_mib']}"),
            ("1 Redis bytes/in-flight job", f"{f['redis_bytes_per_in_flight_job']}"),
            ("1 Celery empty tasks/s", f"{f['celery_ceiling']['tasks_per_s']}"),
        ]
    if "2" in s:
        f = s["2"]["figures"]
        rows += [("2 jobs/s vs Q/2", f"{f['jobs_per_s']} ({f['jobs_per_s_vs_ideal']:.0%})"),
                 ("2 polls per job", f"{f['provider_polls_per_job']}"),
                 ("2 429s received", f"{f['provider_429s']}")]
    if "3" in s:
        f = s["3"]["figures"]
        rows += [("3 jobs/s ours / naive", f"{f['ours']['jobs_per_s']} / "
                                           f"{f['naive']['jobs_per_s']} (x{f['jobs_per_s_ratio']})")]
    if "4" in s:
        for r in s["4"]["figures"]["by_size"]:
            rows.append((f"4 peak RSS MiB @ {r['result_mib']} MiB result",
                         f"{r['worker_rss_peak_mib']} (child {r['worker_rss_child_peak_mib']})"))
    if "5" in s:
        f = s["5"]["figures"]
        rows += [("5 jobs in flight", f"{f['in_flight']}"),
                 ("5 worker RSS bytes/job main (tree)",
                  f"{f['worker_main_rss_bytes_per_in_flight_job']} "
                  f"({f['worker_rss_bytes_per_in_flight_job']})"),
                 ("5 Redis bytes/job", f"{f['redis_bytes_per_in_flight_job']}")]
    return rows


def print_summary(report: dict) -> None:
    rows = summary_rows(report)
    width = max((len(name) for name, _ in rows), default=10)
    print(f"\n{'figure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"\n{report['mode']} run, {report['duration_s']} s; report in {report['out_dir']}",
          file=sys.stdout)


def write_chart(report: dict, out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    s = report["scenarios"]
    panels = [(_throughput, "1"), (_cpu, "1"), (_cap, "2"), (_naive, "3"), (_large, "4"),
              (_in_flight, "5")]
    for ax, (draw, key) in zip(axes.flat, panels, strict=True):
        if key in s:
            draw(ax, s[key]["figures"])
        else:
            ax.set_axis_off()
    m = report["machine"]
    fig.suptitle(f"enhance-queue bench ({report['mode']}): {m['cpus']} cores, "
                 f"{m['memory_gib']} GiB, Python {m['python']}, celery {m['celery']}")
    fig.tight_layout()
    path = out_dir / "report.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _bars(ax, labels, values, title, ylabel) -> None:
    bars = ax.bar(labels, values, color=["tab:blue", "tab:gray", "tab:orange", "tab:green"]
                  [:len(values)])
    ax.bar_label(bars, fmt="%.3g")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)


def _throughput(ax, f) -> None:
    _bars(ax, ["ours", "Celery ceiling\n/ tasks per job"],
          [f["jobs_per_s"], f["ceiling_jobs_per_s"]], "1. jobs/s, no provider cap", "jobs/s")


def _cpu(ax, f) -> None:
    _bars(ax, ["ours", "floor: Celery x tasks\n+ bare calls"],
          [f["worker_cpu_ms_per_job"], f["floor_cpu_ms_per_job"]], "1. worker CPU per job",
          "CPU ms/job")


def _cap(ax, f) -> None:
    _bars(ax, ["ours", "Q/(1+1)"], [f["jobs_per_s"], f["ideal_jobs_per_s"]],
          f"2. PicWish capped: jobs/s ({f['provider_429s']} x 429)", "jobs/s")


def _naive(ax, f) -> None:
    _bars(ax, ["ours", "naive (sleeping task)"],
          [f["ours"]["jobs_per_s"], f["naive"]["jobs_per_s"]],
          f"3. same jobs, same worker: x{f['jobs_per_s_ratio']}", "jobs/s")


def _large(ax, f) -> None:
    rows = f["by_size"]
    sizes = [r["result_mib"] for r in rows]
    ax.plot(sizes, [r["worker_rss_peak_mib"] for r in rows], "o-", label="worker tree peak")
    ax.plot(sizes, [r["worker_rss_child_peak_mib"] for r in rows], "s-", label="largest child")
    ax.plot(sizes, [r["worker_rss_idle_mib"] for r in rows], "x--", label="tree idle")
    ax.set_xlabel("result size (MiB)")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title("4. worker RSS against result size", fontsize=10)
    ax.legend(fontsize=8)


def _in_flight(ax, f) -> None:
    _bars(ax, ["worker main\n(holds the polls)", "worker tree", "Redis"],
          [f["worker_main_rss_bytes_per_in_flight_job"] / 1024,
           f["worker_rss_bytes_per_in_flight_job"] / 1024,
           f["redis_bytes_per_in_flight_job"] / 1024],
          f"5. memory per in-flight job ({f['in_flight']} in flight)", "KiB/job")
