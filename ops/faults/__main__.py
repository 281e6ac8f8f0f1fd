"""``python -m ops.faults [--scenarios 1,...,8] [--smoke] [--out ops/faults/reports/]``.

Runs the real system (private Redis with an append-only file, moto's S3 server behind a
breakable proxy, the provider sandbox, ``enhance worker`` and ``enhance beat`` processes)
through crashes, Redis restarts, provider storms, S3 outages, malformed answers, expiry,
a Sentinel failover and webhooks through crashes, and writes ``report.json`` and
``report.txt``. Exit status 1 when a scenario errored or a promise broke.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path

from ops.bench.runner import parse_suite_args
from ops.faults import params as P
from ops.faults.failover import failover
from ops.faults.hostile import malformed
from ops.faults.report import table, write_json, write_table
from ops.faults.scenarios import crash_storm, expiry, provider_storms, redis_restart, storage_outage
from ops.faults.stack import FaultStack
from ops.faults.webhooks import webhooks
from ops.suite import exit_on_sigterm, run_suite

SCENARIOS = {  # number -> (name, run, params attribute)
    "1": ("crash storm", crash_storm, "crash_storm"),
    "2": ("Redis restart", redis_restart, "redis_restart"),
    "3": ("provider storms", provider_storms, "provider_storms"),
    "4": ("storage outage", storage_outage, "storage_outage"),
    "5": ("malformed answers", malformed, "malformed"),
    "6": ("expiry", expiry, "expiry"),
    "7": ("Sentinel failover", failover, "failover"),
    "8": ("webhooks through crashes", webhooks, "webhooks"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parse_suite_args("python -m ops.faults", __doc__, SCENARIOS, out_dir=Path("ops/faults/reports"),
                            smoke_help="every scenario small: same code paths, under 2 minutes on a quiet machine",
                            out_help="directory for report.json and report.txt", argv=argv)


def run(args: argparse.Namespace) -> dict:
    params = P.smoke() if args.smoke else P.Params()
    report = run_suite(args, SCENARIOS, params, FaultStack, prefix="enhance-faults-",
                       on_error=_stop_everything,
                       load_at_start=[round(x, 2) for x in os.getloadavg()])
    report["all_promises_held"] = not report["errors"] and all(
        s.get("promises", {}).get("held", True) for s in report["scenarios"].values())
    return report


def _stop_everything(stack: FaultStack) -> None:
    stack.stop_workers(kill=True)
    stack.stop_beats()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = run(args)
    write_json(report, args.out)
    write_table(report, args.out)
    print(table(report))
    return 0 if report["all_promises_held"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
