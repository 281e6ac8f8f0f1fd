"""The picture of what ``enhance demo`` did: each input beside its stored result, in HTML.

One self-contained file (images inline as ``data:`` URIs, no script, no external
resource): per job the input and the result with their pixel sizes and bytes, the
provider and model, the cost, and how long each phase took (waiting for admission, the
provider's work, storing).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

from storage.jobs import JobRecord, JobState

MAX_INLINE_BYTES = 8 * 1024 * 1024  # a larger image is described, not embedded


@dataclass
class ReportRow:
    label: str
    record: JobRecord
    source: bytes | None  # the input's bytes (None: not at hand)
    result: bytes | None  # the stored result's bytes (None: no result)


def write_report(path: Path, rows: list[ReportRow], title: str = "enhance demo") -> Path:
    """Write the report to ``path`` (its folder is created); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(_row(row) for row in rows)
    ok = sum(row.record.state is JobState.SUCCEEDED for row in rows)
    path.write_text(_PAGE.format(title=html.escape(title), rows=body,
                                 summary=f"{ok} of {len(rows)} jobs succeeded"))
    return path


def _row(row: ReportRow) -> str:
    rec = row.record
    outcome = rec.state.value if not rec.error else f"{rec.error.code}: {rec.error.message}"
    return (f"<tr><td><b>{html.escape(row.label)}</b><br>{html.escape(rec.provider)} "
            f"{html.escape(rec.model)}<br>{html.escape(outcome)}</td>"
            f"<td>{_figure(row.source)}</td><td>{_figure(row.result)}</td>"
            f"<td>{_facts(rec)}</td></tr>")


def _figure(data: bytes | None) -> str:
    if not data:
        return "<i>none</i>"
    size = _size(data)
    caption = f"{size[0]} x {size[1]} px, {len(data):,} bytes" if size else f"{len(data):,} bytes"
    if len(data) > MAX_INLINE_BYTES or not size:
        return f"<figure><figcaption>{caption}</figcaption></figure>"
    uri = f"data:image/{size[2]};base64,{base64.b64encode(data).decode()}"
    return f'<figure><img src="{uri}" alt=""><figcaption>{caption}</figcaption></figure>'


def _size(data: bytes) -> tuple[int, int, str] | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.width, image.height, (image.format or "png").lower()
    except Exception:  # noqa: BLE001 - an unreadable image is described by its size only
        return None


def _facts(rec: JobRecord) -> str:
    times = rec.transitions
    facts = [f"cost {rec.cost or 0:g} {'coins' if rec.provider == 'hitpaw' else 'credits'}",
             f"total {rec.duration_s():.1f} s"]
    for name, start, end in (("admission", JobState.QUEUED, JobState.SUBMITTED),
                             ("provider", JobState.SUBMITTED, JobState.STORING),
                             ("storing", JobState.STORING, JobState.SUCCEEDED)):
        if start.value in times and end.value in times:
            facts.append(f"{name} {(times[end.value] - times[start.value]).total_seconds():.1f} s")
    facts.append(f"polls {rec.poll_count}")
    if rec.output:
        facts.append(f"<code>{html.escape(rec.output.uri)}</code>")
    return "<br>".join(facts)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: .5em; vertical-align: top; text-align: left; }}
img {{ max-width: 360px; max-height: 280px; display: block; }}
figure {{ margin: 0; }} figcaption {{ font-size: .85em; color: #555; }}
</style></head><body>
<h1>{title}</h1><p>{summary}. Each input beside its stored result.</p>
<table><tr><th>job</th><th>input</th><th>result</th><th>cost and timings</th></tr>
{rows}
</table></body></html>
"""
