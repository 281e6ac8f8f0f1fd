"""``python -m ops.bench [--scenarios 1,2,...,9] [--smoke] [--out ops/bench/reports/]``."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shutil
import signal
import tempfile
import time
import traceback
from pathlib import Path

from ops.bench import params as P
from ops.bench.admission import backlog, fairness, reuse, spend_cap
from ops.bench.memory import large_results, many_in_flight
from ops.bench.report import machine, print_summary, write_chart, write_json
from ops.bench.runner import Context, parse_suite_args
from ops.bench.scenarios import naive, orchestration, provider_cap
from ops.bench.stack import Stack

SCENARIOS = {  # number -> (name, run, params attribute)
    "1": ("orchestration overhead", orchestration, "orchestration"),
    "2": ("under a provider cap", provider_cap, "provider_cap"),
    "3": ("the naive way, side by side", naive, "naive"),
    "4": ("large results", large_results, "large_results"),
    "5": ("many in flight", many_in_flight, "many_in_flight"),
    "6": ("a backlog under the cap", backlog, "backlog"),
    "7": ("fairness across tenants", fairness, "fairness"),
    "8": ("reuse: one image enqueued at once", reuse, "reuse"),
    "9": ("a daily spend cap, processes racing", spend_cap, "spend_cap"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parse_suite_args("python -m ops.bench", __doc__, SCENARIOS, out_dir=Path("ops/bench/reports"),
                            smoke_help="every scenario tiny: same code paths, well under 2 minutes",
                            out_help="directory for report.json and report.png", argv=argv)


def run(args: argparse.Namespace) -> dict:
    params = P.smoke() if args.smoke else P.Params()
    started = time.monotonic()
    report = {"mode": "smoke" if args.smoke else "full", "machine": machine(),
              "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "out_dir": str(args.out), "scenarios": {}, "errors": {}}
    work_dir = Path(tempfile.mkdtemp(prefix="enhance-bench-"))
    try:
        with Stack(work_dir) as stack:
            ctx = Context(stack)
            try:
                for number in args.scenarios:
                    _run_one(ctx, report, number, params)
            finally:
                ctx.close()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    report["duration_s"] = round(time.monotonic() - started, 1)
    report["machine"]["load_average"].append(round(os.getloadavg()[0], 2))
    return report


def _run_one(ctx: Context, report: dict, number: str, params: P.Params) -> None:
    name, scenario, attr = SCENARIOS[number]
    print(f"scenario {number}: {name} ...", flush=True)
    began = time.monotonic()
    try:
        result = scenario(ctx, getattr(params, attr))
    except Exception as exc:  # noqa: BLE001 - one failed scenario must not lose the others
        report["errors"][number] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        ctx.stack.stop_workers(kill=True)
        return
    report["scenarios"][number] = {"name": name, "duration_s": round(time.monotonic() - began, 1),
                                   **result}


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the stack: every process started is stopped


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = run(args)
    write_json(report, args.out)
    write_chart(report, args.out)
    print_summary(report)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
