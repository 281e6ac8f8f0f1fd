"""``python -m ops.bench [--scenarios 1,2,...,10] [--smoke] [--out ops/bench/reports/]``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path

from ops.bench import params as P
from ops.bench.admission import backlog, fairness, reuse, spend_cap
from ops.bench.durability import durable_claims
from ops.bench.memory import large_results, many_in_flight
from ops.bench.report import print_summary, write_chart, write_json
from ops.bench.runner import parse_suite_args
from ops.bench.scenarios import naive, orchestration, provider_cap
from ops.bench.stack import Stack
from ops.suite import exit_on_sigterm, run_suite

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
    "10": ("durable claims: cost per job", durable_claims, None),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parse_suite_args("python -m ops.bench", __doc__, SCENARIOS, out_dir=Path("ops/bench/reports"),
                            smoke_help="every scenario tiny: same code paths, well under 2 minutes",
                            out_help="directory for report.json and report.png", argv=argv)


def run(args: argparse.Namespace) -> dict:
    params = P.smoke() if args.smoke else P.Params()
    report = run_suite(args, SCENARIOS, params, Stack, prefix="enhance-bench-",
                       out_dir=str(args.out))
    report["machine"]["load_average"].append(round(os.getloadavg()[0], 2))
    return report


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = run(args)
    write_json(report, args.out)
    write_chart(report, args.out)
    print_summary(report)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
