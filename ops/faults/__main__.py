"""``python -m ops.faults [--scenarios 1,...,7] [--smoke] [--out ops/faults/reports/]``.

Runs the real system (private Redis with an append-only file, moto's S3 server behind a
breakable proxy, the provider sandbox, ``enhance worker`` and ``enhance beat`` processes)
through crashes, Redis restarts, provider storms, S3 outages, malformed answers, expiry
and a Sentinel failover, and writes ``report.json`` and ``report.txt``. Exit status 1 when
a scenario errored or a promise broke.
"""

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

from ops.bench.report import machine
from ops.bench.runner import Context, parse_suite_args
from ops.faults import params as P
from ops.faults.failover import failover
from ops.faults.hostile import malformed
from ops.faults.report import table, write_json, write_table
from ops.faults.scenarios import crash_storm, expiry, provider_storms, redis_restart, storage_outage
from ops.faults.stack import FaultStack

SCENARIOS = {  # number -> (name, run, params attribute)
    "1": ("crash storm", crash_storm, "crash_storm"),
    "2": ("Redis restart", redis_restart, "redis_restart"),
    "3": ("provider storms", provider_storms, "provider_storms"),
    "4": ("storage outage", storage_outage, "storage_outage"),
    "5": ("malformed answers", malformed, "malformed"),
    "6": ("expiry", expiry, "expiry"),
    "7": ("Sentinel failover", failover, "failover"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parse_suite_args("python -m ops.faults", __doc__, SCENARIOS, out_dir=Path("ops/faults/reports"),
                            smoke_help="every scenario small: same code paths, under 3 minutes",
                            out_help="directory for report.json and report.txt", argv=argv)


def run(args: argparse.Namespace) -> dict:
    params = P.smoke() if args.smoke else P.Params()
    started = time.monotonic()
    report = {"mode": "smoke" if args.smoke else "full", "machine": machine(),
              "load_at_start": [round(x, 2) for x in os.getloadavg()],
              "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "scenarios": {}, "errors": {}}
    work_dir = Path(tempfile.mkdtemp(prefix="enhance-faults-"))
    try:
        with FaultStack(work_dir) as stack:
            ctx = Context(stack)
            try:
                for number in args.scenarios:
                    _run_one(ctx, report, number, params)
            finally:
                ctx.close()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    report["duration_s"] = round(time.monotonic() - started, 1)
    report["all_promises_held"] = not report["errors"] and all(
        s.get("promises", {}).get("held", True) for s in report["scenarios"].values())
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
        ctx.stack.stop_beats()
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
    write_table(report, args.out)
    print(table(report))
    return 0 if report["all_promises_held"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
