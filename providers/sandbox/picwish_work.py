"""A PicWish task's work (download, inspect, render) and its documented query fields.

States over the processing time: 0 queued (first 10 %), 2 preparing (to 25 %), 3 waiting
(to 35 %), 4 processing with ``progress`` rising from 1 to 99, then 1 done (progress 100)
or a negative failure state. Times (``download_time``, ``time_elapsed``) are seconds;
timestamps are Unix seconds; fields not known yet are null.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from .catalog import (
    MEGAPIXEL,
    PICWISH_FORMATS,
    PICWISH_MAX_INPUT_SIDE_PX,
    PICWISH_TYPES,
    picwish_scale,
)
from .fetch import FetchError, fetch
from .jobs import Job, Outcome
from .render import RenderSpec, SourceError, TooManyPixels, inspect, render
from .state import SandboxState

#: (state, end of the phase as a fraction of the processing time), in order.
PHASES = ((0, 0.10), (2, 0.25), (3, 0.35), (4, 1.0))
PROCESSING_STARTS = 0.35
STATE_DETAILS = {
    0: "Queued", 2: "Preparing", 3: "Waiting", 4: "Processing", 1: "Success",
    -1: "Failed", -2: "Result upload failed", -3: "Could not download the source image",
    -5: "Image too large", -7: "Invalid image", -8: "Processing timeout",
}
INJECTED_STATES = (-1, -2, -8)


def work(state: SandboxState, job: Job, *, uploaded: bool, injected: bool) -> Outcome:
    """Run the task (on the job pool); give the credits back if it fails."""
    outcome = _attempt(state, job, uploaded, injected)
    if outcome.output is None:
        state.refund("picwish_credits", job.cost)
    return outcome


def _attempt(state: SandboxState, job: Job, uploaded: bool, injected: bool) -> Outcome:
    cfg = state.config
    source = state.jobs.job_dir(job) / "source"
    try:
        if not uploaded:
            job.download_time_s = fetch(job.source_url or "", source,
                                        cfg.picwish_fetch_timeout_s, cfg.max_source_bytes)
        return _render(state, job, source, injected)
    except FetchError as exc:
        return Outcome(fail_state=-3, detail=f"{STATE_DETAILS[-3]}: {exc}")
    except TooManyPixels:
        return Outcome(fail_state=-5, detail=STATE_DETAILS[-5])
    except SourceError as exc:
        return Outcome(fail_state=-7, detail=f"{STATE_DETAILS[-7]}: {exc}")


def _render(state: SandboxState, job: Job, source: Path, injected: bool) -> Outcome:
    info = inspect(source)
    if info.format not in PICWISH_FORMATS:
        return Outcome(fail_state=-7, detail=f"{STATE_DETAILS[-7]}: {info.format} not accepted")
    if max(info.width, info.height) > PICWISH_MAX_INPUT_SIDE_PX:
        return Outcome(fail_state=-5, detail=f"{STATE_DETAILS[-5]}: over 4096 x 4096")
    if injected:
        code = state.choice(INJECTED_STATES)
        return Outcome(fail_state=code, detail=STATE_DETAILS[code])
    scale = picwish_scale(PICWISH_TYPES[job.params["type"]], info.width, info.height)
    if info.width * info.height * scale**2 > state.config.max_render_mp * MEGAPIXEL:
        return Outcome(fail_state=-1, detail="output over the sandbox's max_render_mp")
    spec = RenderSpec(scale=scale, pad_to_bytes=state.config.large_result_bytes)
    return Outcome(output=render(source, spec, state.jobs.job_dir(job)))


def state_and_progress(job: Job, now_mono: float) -> tuple[int, int]:
    """The task's ``state`` and ``progress`` at ``now_mono``."""
    if job.finished(now_mono):
        return (1, 100) if job.outcome.output is not None else (job.outcome.fail_state, 0)
    fraction = job.fraction(now_mono)
    code = next((state for state, end in PHASES if fraction < end), 4)
    if code != 4:
        return code, 0
    share = (fraction - PROCESSING_STARTS) / (1.0 - PROCESSING_STARTS)
    return 4, min(99, 1 + int(share * 98))


def task_data(job: Job, now_mono: float, host_url: str) -> dict[str, Any]:
    """Every documented query field of ``job`` at ``now_mono``."""
    code, progress = state_and_progress(job, now_mono)
    done = job.finished(now_mono)
    output = job.outcome.output if done else None
    processing = job.fraction(now_mono) >= PROCESSING_STARTS
    detail = job.outcome.detail if done and output is None else STATE_DETAILS[code]
    return {
        "task_id": job.id,
        "created_at": int(job.created_at),
        "processed_at": int(job.wall_time(job.created_mono + PROCESSING_STARTS * job.duration_s))
        if processing else None,
        "completed_at": int(job.wall_time(job.completed_mono)) if done else None,
        "image": _image(job, host_url) if output else None,
        "return_type": job.params["return_type"],
        "type": job.params["type"],
        "progress": progress,
        "state": code,
        "image_width": output.width if output else None,
        "image_height": output.height if output else None,
        "image_size_kb": round(output.size_bytes / 1024, 2) if output else None,
        "out_format": output.extension if output else None,
        "state_detail": detail,
        "download_time": _rounded(job.download_time_s),
        "time_elapsed": _rounded((job.completed_mono if done else now_mono) - job.created_mono),
    }


def _image(job: Job, host_url: str) -> str:
    """The result: a URL (return_type 1) or the file's base64 (return_type 2)."""
    if job.params["return_type"] == 2:
        return base64.b64encode(job.outcome.output.path.read_bytes()).decode("ascii")
    return f"{host_url}_sandbox/results/{job.result_name}"


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
