"""What ``python -m ops.bench`` and ``python -m ops.faults`` share: running a scenario table.

A suite is a table ``number -> (name, run, params attribute)``: ``run(ctx, params)`` gets
``getattr(params, attribute)`` (``None`` when the attribute is ``None``: a scenario with no
parameters of its own) and returns its part of the report. ``run_suite`` starts the
suite's stack once, runs the chosen scenarios on it in order, and records each one's
result, or its error, without letting one failed scenario lose the others.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops.bench.report import machine
from ops.bench.runner import Context

Table = dict[str, tuple[str, Callable[[Context, Any], dict], str | None]]


def run_suite(args: argparse.Namespace, table: Table, params: object, stack_cls: type,
              *, prefix: str, on_error: Callable[[Any], None] | None = None,
              **report_fields: object) -> dict:
    """Run ``args.scenarios`` of ``table`` on one ``stack_cls`` stack; return the report.

    Args:
        args: the parsed command line (``ops.bench.runner.parse_suite_args``).
        table: the suite's scenarios.
        params: the parameters of every scenario (full or smoke).
        stack_cls: the stack to start, in a temporary directory named with ``prefix``.
        on_error: stops what a failed scenario left running (default: its workers).
        report_fields: more top-level fields of the report.
    """
    started = time.monotonic()
    report = {"mode": "smoke" if args.smoke else "full", "machine": machine(),
              **report_fields,
              "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "scenarios": {}, "errors": {}}
    work_dir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with stack_cls(work_dir) as stack:
            ctx = Context(stack)
            try:
                for number in args.scenarios:
                    run_one(ctx, report, table, number, params, on_error)
            finally:
                ctx.close()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    report["duration_s"] = round(time.monotonic() - started, 1)
    return report


def run_one(ctx: Context, report: dict, table: Table, number: str, params: object,
            on_error: Callable[[Any], None] | None = None) -> None:
    """Run scenario ``number``; its result, or its error, goes into ``report``."""
    name, scenario, attr = table[number]
    print(f"scenario {number}: {name} ...", flush=True)
    began = time.monotonic()
    try:
        result = scenario(ctx, getattr(params, attr) if attr else None)
    except Exception as exc:  # noqa: BLE001 - one failed scenario must not lose the others
        report["errors"][number] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        (on_error or _stop_workers)(ctx.stack)
        return
    report["scenarios"][number] = {"name": name, "duration_s": round(time.monotonic() - began, 1),
                                   **result}


def _stop_workers(stack: Any) -> None:
    stack.stop_workers(kill=True)


def exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM unwinds the stack like Ctrl-C: every process the suite started is stopped."""
    raise SystemExit(128 + signum)
