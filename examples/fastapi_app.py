"""A complete FastAPI backend on enhance-queue (README, "Producer API").

    POST /enhance           an uploaded image (multipart field ``image``) or a ``url`` form
                            field, ``provider`` and ``model`` -> 202 {"job_id", "status_url"}
    GET  /enhance/{job_id}  the job's state and error, and once it succeeded an HTTPS
                            ``output_url`` a browser can open
    POST /hooks/enhance     the webhook receiver: checks the signature, deduplicates on
                            ``webhook-id``, hands the event to ``on_event``

Run it beside the workers, with their environment (``REDIS_URL``, ``CELERY_BROKER_URL``,
``S3_*``, ``WEBHOOK_SECRET``) and ``ENHANCE_WEBHOOK_URL`` set to where the workers reach
``/hooks/enhance`` (unset: no webhooks, poll the status endpoint), from the project's
directory::

    pip install -e '.[examples]'     # FastAPI, python-multipart, uvicorn, Django
    uvicorn examples.fastapi_app:app  # 127.0.0.1:8000

Every call is an async twin (``aenqueue``...), so no request blocks the event loop, and
every error of the producer API carries the HTTP status to answer with (``status_code``:
an unreadable image or unknown provider 422, an unknown job 404, a spend cap 402...).
Tested against the real stack in ``tests/examples/test_fastapi_app.py``.
"""

from __future__ import annotations

# README >>>
import os
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, File, Form, Header, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from tasks.producer import (
    EnhanceError,
    InvalidInput,
    aclose,
    aenqueue,
    aget_job,
    aoutput_url,
    verify_webhook,
)


@asynccontextmanager
async def lifespan(_app: FastAPI):
    yield
    await aclose()  # the async twins' Redis connections


app = FastAPI(title="enhance-queue example", lifespan=lifespan)
seen: dict[str, dict] = {}  # webhook-id -> event: keep it in your database


@app.exception_handler(EnhanceError)
async def enhance_error(_request: Request, exc: EnhanceError) -> JSONResponse:
    return JSONResponse({"error": exc.code, "message": exc.message}, exc.status_code)


@app.post("/enhance", status_code=202)
async def enhance(image: Annotated[UploadFile | None, File()] = None,
                  url: Annotated[str | None, Form()] = None,
                  provider: Annotated[str, Form()] = "picwish",
                  model: Annotated[str | None, Form()] = None,
                  idempotency_key: Annotated[str | None, Header()] = None) -> dict:
    if (image is None) == (url is None):
        raise InvalidInput("send an image file or a url")
    if url is not None and not url.lower().startswith(("https://", "http://")):
        raise InvalidInput("url must be http(s)")  # enqueue also reads paths and s3:// URIs
    job_id = await aenqueue(image.file if image else url, provider, model,  # read capped
                            filename=image.filename if image else None,
                            idempotency_key=idempotency_key,
                            webhook=os.environ.get("ENHANCE_WEBHOOK_URL"))
    return {"job_id": job_id, "status_url": f"/enhance/{job_id}"}


@app.get("/enhance/{job_id}")
async def job_status(job_id: str) -> dict:
    job = await aget_job(job_id)  # 404 for an unknown id
    done = job.state.value == "succeeded"
    return {"job_id": job.id, "state": job.state.value,
            "output_url": await aoutput_url(job_id, expires_in=3600) if done else None,
            "error": job.error.model_dump() if job.error else None}


@app.post("/hooks/enhance", status_code=204)
async def webhook(request: Request) -> Response:
    event = verify_webhook(await request.body(), request.headers)  # 400 unless signed
    if request.headers["webhook-id"] not in seen:  # deliveries come at least once
        seen[request.headers["webhook-id"]] = event
        on_event(event)
    return Response(status_code=204)
# <<< README


def on_event(event: dict) -> None:
    """Your code: mark the order done, send the user ``event["data"]["output_url"]``..."""
