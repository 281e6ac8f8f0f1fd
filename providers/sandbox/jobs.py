"""Simulated jobs: a processing time, a background worker, a result file with a lifetime.

A job is created by a submit with a processing time drawn from ``processing_time_s``.
Its work (fetching, inspecting, rendering) runs at once on a small thread pool; what the
API shows is derived from the clock: in-progress states until the processing time has
passed *and* the work is done, then the outcome. Status handlers never wait on the work.

Results are served by name (``<token>.<ext>``) under ``/_sandbox/results/``; a result
expires ``result_ttl_s`` after the job completed, and its file is deleted soon after.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .render import Output

SWEEP_INTERVAL_S = 1.0  # expired result files are deleted at most this often


@dataclass(frozen=True)
class Outcome:
    """How a job's work ended: an output, or a failure with a PicWish-style state."""

    output: Output | None = None
    fail_state: int = -1  # PicWish negative state; HitPaw only says ERROR
    detail: str = ""


@dataclass
class Job:
    """One provider job. Times ending in ``_mono`` are ``time.monotonic()`` values."""

    provider: str
    duration_s: float
    params: dict[str, Any]
    cost: int
    source_url: str | None = None
    serve_result: bool = True  # False: the result is only returned inline (base64)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: float = field(default_factory=time.time)
    created_mono: float = field(default_factory=time.monotonic)
    outcome: Outcome | None = None
    outcome_mono: float | None = None
    download_time_s: float | None = None
    result_name: str | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def ready_mono(self) -> float:
        """When the processing time has passed."""
        return self.created_mono + self.duration_s

    def fraction(self, now_mono: float) -> float:
        """How far through its processing time the job is, 0.0 to 1.0."""
        if self.duration_s <= 0:
            return 1.0
        return min(1.0, max(0.0, (now_mono - self.created_mono) / self.duration_s))

    def finished(self, now_mono: float) -> bool:
        """True once the outcome may be shown."""
        return self.outcome is not None and now_mono >= self.ready_mono

    @property
    def completed_mono(self) -> float:
        """When the outcome became visible (valid once ``finished``)."""
        return max(self.ready_mono, self.outcome_mono or self.ready_mono)

    def wall_time(self, mono: float) -> float:
        """Convert a monotonic instant of this job to a Unix timestamp."""
        return self.created_at + (mono - self.created_mono)


class JobStore:
    """Every job of one sandbox, its worker pool and its result files."""

    def __init__(self, work_dir: Path, workers: int) -> None:
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._results: dict[str, Job] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox-job")
        self._last_sweep_mono = 0.0

    def job_dir(self, job: Job) -> Path:
        """A private directory for the job's files."""
        path = self.work_dir / job.id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self, job: Job, work: Callable[[Job], Outcome]) -> None:
        """Register ``job`` and run ``work`` for it in the background."""
        with self._lock:
            self._jobs[job.id] = job
        self._pool.submit(self._run, job, work)

    def _run(self, job: Job, work: Callable[[Job], Outcome]) -> None:
        try:
            outcome = work(job)
        except Exception as exc:  # noqa: BLE001 - a job must always end
            outcome = Outcome(fail_state=-1, detail=f"internal error: {type(exc).__name__}")
        if outcome.output is not None and job.serve_result:
            name = f"{uuid.uuid4().hex}.{outcome.output.extension}"
            with self._lock:
                self._results[name] = job
            job.result_name = name
        job.outcome, job.outcome_mono = outcome, time.monotonic()
        job.done.set()

    def release(self, within_s: float) -> int:
        """Let every job still processing finish within ``within_s`` from now.

        Tests hold jobs with a long processing time until a condition is reached (every
        job in flight at once), then release them: the condition no longer depends on how
        fast a loaded machine submits. Returns how many jobs were released.
        """
        now = time.monotonic()
        with self._lock:
            held = sorted((job for job in self._jobs.values() if now < job.ready_mono),
                          key=lambda job: job.created_mono)
        for i, job in enumerate(held, start=1):
            job.duration_s = now - job.created_mono + within_s * i / len(held)
        return len(held)

    def get(self, job_id: str) -> Job | None:
        """The job with this id, if any."""
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        """Every job, oldest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda job: job.created_mono)

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def by_result(self, name: str) -> Job | None:
        """The job whose result file is called ``name``, if any."""
        with self._lock:
            return self._results.get(name)

    def sweep(self, ttl_s: float) -> None:
        """Delete result files that expired (at most once per ``SWEEP_INTERVAL_S``)."""
        now = time.monotonic()
        if now - self._last_sweep_mono < SWEEP_INTERVAL_S:
            return
        self._last_sweep_mono = now
        with self._lock:
            jobs = list(self._results.values())
        for job in jobs:
            if job.finished(now) and now > job.completed_mono + ttl_s:
                job.outcome.output.path.unlink(missing_ok=True)

    def clear(self) -> None:
        """Forget every job and delete every file."""
        with self._lock:
            self._jobs.clear()
            self._results.clear()
        for child in self.work_dir.iterdir():
            shutil.rmtree(child, ignore_errors=True)

    def close(self) -> None:
        """Stop the workers (running work is abandoned)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
