"""``enhance submit --wait``: follow one job and say what is happening, on stderr.

A status line shows the job's state and the provider's progress as they change
(``queued -> submitted -> processing 40 % -> storing -> succeeded``). On a terminal it is
redrawn in place every second; elsewhere (a pipe, a log, ``-v`` with its log lines) each
new state is a line of its own. When the job has not moved for ``NO_WORKER_AFTER_S`` and
no worker consumes the queue its next step goes to, a line says so and how to start one.
Ctrl-C stops the waiting, not the job: a line says how to follow it.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time

import click

from storage.jobs import JobRecord, JobState
from workers.cli_errors import EXIT_INTERRUPTED
from workers.constants import ADMIT_QUEUE, POLL_QUEUE, STORE_QUEUE, SUBMIT_QUEUE

NO_WORKER_AFTER_S = 5.0  # a job this long in one state gets its queue's consumers checked
RECHECK_S = 15.0  # ...and again this often while it stays there
REDRAW_S = 1.0  # a terminal's status line is redrawn this often (elapsed time)
BAR_WIDTH = 20

#: The queues a job's next step is sent to, by the state it waits in.
NEXT_QUEUES = {
    JobState.QUEUED: (ADMIT_QUEUE, SUBMIT_QUEUE),
    JobState.SUBMITTED: (POLL_QUEUE,),
    JobState.PROCESSING: (POLL_QUEUE,),
    JobState.STORING: (STORE_QUEUE,),
}


def wait_for_job(job_id: str, timeout_s: float, show_progress: bool = True) -> JobRecord:
    """Follow ``job_id`` until it ends or ``timeout_s`` passes; return its last record.

    Ctrl-C prints how to follow the job and exits with ``EXIT_INTERRUPTED`` (the CLI
    makes sure SIGINT raises ``KeyboardInterrupt``: ``EnhanceGroup.invoke``).
    """
    from workers.runtime import get_runtime

    line = StatusLine(job_id, sys.stderr, show=show_progress, live=_can_redraw(sys.stderr))
    watcher = WorkerCheck()
    try:
        record = _follow(get_runtime(), job_id, timeout_s, line, watcher)
    except KeyboardInterrupt:
        line.close()
        now = f" (now {line.record.state.value})" if line.record else ""
        click.echo(f"stopped waiting; job {job_id} carries on{now}. Follow it with: "
                   f"enhance status {job_id}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    line.close()
    return record


def _follow(rt, job_id: str, timeout_s: float, line: StatusLine, watcher: WorkerCheck):
    deadline = time.monotonic() + timeout_s
    record = None
    while (left_s := deadline - time.monotonic()) > 0:
        for [record] in rt.jobs.watch([job_id], min(REDRAW_S, left_s)):
            line.show(record)
            if record.state.final:
                return record
        if hint := watcher.hint(record):
            line.message(hint)
    return record


class StatusLine:
    """The job's state, progress and elapsed time on one line of ``stream``."""

    def __init__(self, job_id: str, stream, show: bool = True, live: bool = True) -> None:
        self.job_id, self.stream, self.show_line, self.live = job_id, stream, show, live
        self.started = time.monotonic()
        self._last_label: str | None = None
        self._drawn = False
        self.record: JobRecord | None = None  # the last one shown

    def show(self, record: JobRecord) -> None:
        self.record = record
        label = describe_state(record)
        if not self.show_line:
            return
        if self.live:
            self._draw(self._text(record, label))
        elif label != self._last_label:
            self.stream.write(f"job {self.job_id}: {label}\n")
            self.stream.flush()
        self._last_label = label

    def message(self, text: str) -> None:
        """Print ``text`` on a line of its own above the status line."""
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def _text(self, record: JobRecord, label: str) -> str:
        done = percent(record)
        filled = BAR_WIDTH * done // 100
        elapsed = time.monotonic() - self.started
        return (f"job {self.job_id} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {label} "
                f"({elapsed:.0f} s)")

    def _draw(self, text: str) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r" + text[:width] + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False


def describe_state(record: JobRecord) -> str:
    """``processing 40 %``, ``queued (waiting on job X)``, ``failed: invalid_input``..."""
    label = record.state.value
    if record.state is JobState.PROCESSING and record.progress is not None:
        label += f" {record.progress:.0f} %"
    if record.follows and not record.state.final:
        label += f" (same image as job {record.follows}, in flight)"
    if record.error:
        label += f": {record.error.code}"
    return label


def percent(record: JobRecord) -> int:
    """How far the job is, 0-100: the provider's progress while it processes."""
    if record.state.final:
        return 100
    if record.state is JobState.STORING:
        return 99
    return int(max(0, min(98, record.progress or 0)))


class WorkerCheck:
    """Says when no worker consumes the queue a stalled job's next step goes to."""

    def __init__(self, after_s: float = NO_WORKER_AFTER_S, every_s: float = RECHECK_S) -> None:
        self.after_s, self.every_s = after_s, every_s
        self._state: JobState | None = None
        self._since = time.monotonic()
        self._next_check = 0.0

    def hint(self, record: JobRecord | None) -> str | None:
        """A line for the person waiting, or None (checked at most every ``every_s``)."""
        now = time.monotonic()
        if record is None or record.state not in NEXT_QUEUES:
            return None
        if record.state is not self._state:
            self._state, self._since, self._next_check = record.state, now, 0.0
        if now - self._since < self.after_s or now < self._next_check:
            return None
        self._next_check = now + self.every_s
        return no_worker_hint(NEXT_QUEUES[record.state], consumed_queues())


def consumed_queues() -> dict[str, set[str]] | None:
    """Each live worker's queues (Celery's ``inspect active_queues``); None if none answered."""
    from workers.app import app

    answer = app.control.inspect(timeout=1.0).active_queues()
    if not answer:
        return None
    return {node: {q["name"] for q in queues or ()} for node, queues in answer.items()}


def no_worker_hint(needed: tuple[str, ...], workers: dict[str, set[str]] | None) -> str | None:
    """The line saying which of ``needed`` no worker consumes, and how to start one."""
    consumed = set().union(*workers.values()) if workers else set()
    missing = [q for q in needed if q not in consumed]
    if not missing:
        return None
    names = ", ".join(missing)
    if not workers:
        return (f"no worker is running: nothing consumes {names} (no worker answered Celery's "
                "inspect). Start one in another terminal: enhance worker (or the whole local "
                "stack: enhance dev)")
    return (f"no worker consumes {names} (workers up: {', '.join(sorted(workers))}). Start "
            f"one: enhance worker --queues {','.join(missing)}")


def _can_redraw(stream) -> bool:
    """A terminal, and no INFO log lines that would land in the middle of the line."""
    return stream.isatty() and logging.getLogger().getEffectiveLevel() > logging.INFO
