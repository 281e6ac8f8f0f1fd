"""PicWish advanced image enhancer ("scale-pro") client.

Follows /work/shared/provider-api/picwish-scale-pro.md including its reader's notes:
requests are multipart/form-data, success needs HTTP 200, body ``status`` 200 and
``data.state == 1``; state 0 and 2-4 are still in progress, negative states are failures.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, ClassVar
from urllib.parse import quote

import requests
from pydantic import SecretStr, ValidationError

from providers.base import ImageInfo, JobStatus, ModelInfo, Phase, Provider, Submission
from providers.errors import EnhanceError, InvalidInput, ProtocolError
from providers.http import (
    ApiSession,
    body_excerpt,
    error_class_for_status,
    json_body,
    parse_retry_after,
)
from providers.images import (
    extension_for_format,
    extension_from_url,
    inspect_image,
    normalize_extension,
)
from providers.picwish_api import (
    CREDITS_BY_TYPE,
    EXTENSIONS,
    MAX_SIDE_PX,
    MAX_UPLOAD_BYTES,
    MAX_URL_CHARS,
    MODEL_TYPES,
    MODELS,
    OPTIONS,
    PATH,
    SYNC_READ_TIMEOUT_S,
    PicWishRequest,
    PicWishTask,
    numeric_state,
    state_failure,
)
from providers.validation import (
    check_options,
    describe_answer_errors,
    pydantic_errors_as_invalid_input,
    vendor_message,
)


class PicWishClient(Provider):
    """Client of the PicWish scale-pro API.

    Args:
        api_key: The ``X-API-KEY`` header value.
        base_url: The API's base URL (the vendor text names none).
        connect_timeout_s: Seconds to wait for a connection.
        read_timeout_s: Seconds to wait for an answer. A ``sync=1`` submit waits for the
            result (source fetch up to 10 s + processing up to 30 s): ``build_request``
            refuses ``sync=1`` when this is under ``SYNC_READ_TIMEOUT_S``.
        deadline_s: Seconds one call may take in all (see ``ApiSession``).
        max_answer_bytes: The largest answer read; PicWish answers may carry the result
            itself in base64 (``return_type=2``), so this bounds inline results too.
        session: A ``requests.Session`` to use (the caller keeps ownership of it).
    """

    name: ClassVar[str] = "picwish"
    MODELS: ClassVar[dict[str, ModelInfo]] = MODELS
    DEFAULT_MODEL: ClassVar[str] = "ultra_hd"
    #: URL or base64, synchronous or not: the same image either way.
    DELIVERY_OPTIONS: ClassVar[frozenset[str]] = frozenset({"sync", "return_type"})
    max_url_chars: ClassVar[int | None] = MAX_URL_CHARS
    accepts_upload: ClassVar[bool] = True
    max_upload_bytes: ClassVar[int | None] = MAX_UPLOAD_BYTES

    def __init__(
        self,
        api_key: str | SecretStr,
        base_url: str = "https://techhk.aoscdn.com",
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        deadline_s: float | None = None,
        max_answer_bytes: int = 48 * 1024 * 1024,
        session: requests.Session | None = None,
    ) -> None:
        self._http = ApiSession(
            self.name,
            base_url,
            "X-API-KEY",
            api_key,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            deadline_s=deadline_s,
            max_answer_bytes=max_answer_bytes,
            session=session,
        )

    def __repr__(self) -> str:
        return f"PicWishClient(base_url={self._http.base_url!r})"

    # --- Building and validating a request -----------------------------------------------

    def build_request(
        self,
        model: str | None,
        options: dict[str, Any],
        *,
        image_url: str | None = None,
        image_file: bytes | None = None,
        image_info: ImageInfo | None = None,
    ) -> PicWishRequest:
        """Build a ``PicWishRequest``; raise ``InvalidInput`` naming the broken limit.

        Options: ``sync`` (0/1), ``return_type`` (1 URL, 2 base64), ``filename``.
        An upload's header is read to check its format and size when no image_info is given.
        """
        model_type = self._model_type(model or self.default_model())
        check_options(self.name, options, OPTIONS)
        self._check_source(image_url, image_file)
        if image_file is not None and image_info is None:
            image_info = inspect_image(image_file)
        extension = self._extension(options, image_url, image_info)
        if image_info is not None:
            self._check_image(image_info)
        self._check_sync_fits(options.get("sync", 0))
        with pydantic_errors_as_invalid_input(self.name):
            return PicWishRequest(
                image_url=image_url if image_file is None else None,
                image_file=image_file,
                filename=options.get("filename") or f"image{extension or ''}",
                sync=options.get("sync", 0),
                type=model_type,
                return_type=options.get("return_type", 1),
            )

    def _model_type(self, name: str) -> int:
        if name not in MODEL_TYPES:
            raise InvalidInput(
                f"picwish has no model {name!r}; models: {', '.join(MODEL_TYPES)}", self.name
            )
        return MODEL_TYPES[name][0]

    def _check_sync_fits(self, sync: Any) -> None:
        read_timeout_s = self._http.timeout_s[1]
        if sync == 1 and read_timeout_s < SYNC_READ_TIMEOUT_S:
            raise InvalidInput(
                f"picwish sync=1 waits up to {SYNC_READ_TIMEOUT_S} s for the answer (source "
                f"download + the 30 s processing cap) but the read timeout is "
                f"{read_timeout_s:g} s: the call would time out after the job was charged. "
                "Use sync=0 (polled), or raise HTTP_READ_TIMEOUT_S (and HTTP_DEADLINE_S) to "
                f"at least {SYNC_READ_TIMEOUT_S}",
                self.name,
            )

    def _check_source(self, image_url: str | None, image_file: bytes | None) -> None:
        if (image_url is None) == (image_file is None):
            raise InvalidInput("picwish needs exactly one of image_url and image_file", self.name)
        if image_url is not None and len(image_url) > MAX_URL_CHARS:
            raise InvalidInput(
                f"image_url is {len(image_url)} characters; picwish accepts at most "
                f"{MAX_URL_CHARS} (upload the file instead)",
                self.name,
            )
        if image_file is not None and len(image_file) > MAX_UPLOAD_BYTES:
            raise InvalidInput(_too_big(len(image_file)), self.name)

    def _extension(
        self, options: dict[str, Any], image_url: str | None, image_info: ImageInfo | None
    ) -> str | None:
        if image_info is not None:
            extension = extension_for_format(image_info.format) or f".{image_info.format}"
        elif options.get("filename"):
            extension = extension_from_url(str(options["filename"]))
        else:
            extension = extension_from_url(image_url or "")
        if extension is not None and normalize_extension(extension) not in EXTENSIONS:
            raise InvalidInput(
                f"format {extension.lstrip('.').lower()} is not accepted by picwish; accepted: "
                f"{', '.join(e.lstrip('.') for e in EXTENSIONS)}",
                self.name,
            )
        return extension

    def _check_image(self, image: ImageInfo) -> None:
        if image.width > MAX_SIDE_PX or image.height > MAX_SIDE_PX:
            raise InvalidInput(
                f"image is {image.width} x {image.height} px; picwish accepts at most "
                f"{MAX_SIDE_PX} x {MAX_SIDE_PX}",
                self.name,
            )
        if image.size_bytes is not None and image.size_bytes > MAX_UPLOAD_BYTES:
            raise InvalidInput(_too_big(image.size_bytes), self.name)

    # --- Talking to PicWish --------------------------------------------------------------

    def submit(self, request: PicWishRequest) -> Submission:  # type: ignore[override]
        """Create the task once; with ``sync=1`` the answer carries the finished status."""
        if not isinstance(request, PicWishRequest):
            raise TypeError(f"expected a PicWishRequest, got {type(request).__name__}")
        response = self._http.request("POST", PATH, files=request.multipart())
        task = self._task(self._data(response), response)
        if task.task_id is None:
            raise self._protocol_error(response, "create answer has no data.task_id")
        status = self._job_status(task.task_id, task, response) if request.sync else None
        return Submission(
            provider=self.name, job_id=task.task_id, cost=CREDITS_BY_TYPE[request.type],
            status=status,
        )

    def query(self, job_id: str) -> JobStatus:
        """Ask once for the task's state."""
        if not job_id:
            raise InvalidInput("picwish: empty task id", self.name)
        response = self._http.request("GET", f"{PATH}/{quote(job_id, safe='')}")
        return self._job_status(job_id, self._task(self._data(response), response), response)

    def close(self) -> None:
        self._http.close()

    # --- Reading answers -----------------------------------------------------------------

    def _data(self, response: requests.Response) -> dict[str, Any]:
        """The ``data`` of a success answer; HTTP or body ``status`` failures are raised."""
        body = json_body(response)
        if not response.ok:
            raise self._error(response, body, response.status_code)
        if response.status_code != 200:  # "Success needs HTTP 200"
            raise self._protocol_error(
                response, f"undocumented HTTP status {response.status_code}")
        if not isinstance(body, dict) or "status" not in body:
            raise self._protocol_error(response, "response of no documented shape")
        if numeric_state(body["status"]) != 200:
            raise self._error(response, body, body["status"])
        if not isinstance(body.get("data"), dict):
            raise self._protocol_error(response, "success answer without data")
        return body["data"]

    def _error(self, response: requests.Response, body: Any, status: Any) -> EnhanceError:
        code = status if isinstance(status, int) and not isinstance(status, bool) else None
        message = body.get("message") if isinstance(body, dict) else None
        text = vendor_message(message)
        return error_class_for_status(code)(
            f"picwish: {text} (status {status}, HTTP {response.status_code})",
            self.name,
            code,
            response.status_code,
            parse_retry_after(response.headers.get("Retry-After")),
            body_excerpt(response),
        )

    def _protocol_error(self, response: requests.Response, what: str) -> ProtocolError:
        return ProtocolError(
            f"picwish: {what} (HTTP {response.status_code})",
            self.name,
            None,
            response.status_code,
            None,
            body_excerpt(response),
        )

    def _task(self, data: dict[str, Any], response: requests.Response) -> PicWishTask:
        try:
            return PicWishTask.model_validate(data)
        except ValidationError as exc:
            raise self._protocol_error(
                response, f"invalid answer: {describe_answer_errors(exc)}") from exc

    def _job_status(
        self, job_id: str, task: PicWishTask, response: requests.Response
    ) -> JobStatus:
        state = task.state
        if state is None:
            raise self._protocol_error(response, "no numeric data.state")
        common: dict[str, Any] = {
            "provider": self.name,
            "job_id": job_id,
            "raw_status": str(state),
            "progress": task.progress_percent,
        }
        if state == 1:
            return self._completed(common, task, response)
        if state >= 0:
            return JobStatus(**common, phase=Phase.IN_PROGRESS)
        error_code, message = state_failure(state, task.state_detail)
        return JobStatus(**common, phase=Phase.FAILED, error_code=error_code, error_message=message)

    def _completed(
        self, common: dict[str, Any], task: PicWishTask, response: requests.Response
    ) -> JobStatus:
        image = task.image
        if not image:
            raise self._protocol_error(response, "state 1 without data.image")
        if task.returns_base64(image):
            result: dict[str, Any] = {"result_bytes": self._decode(image, response)}
        else:
            result = {"result_url": image}
        return JobStatus(
            **{**common, "progress": 100},
            phase=Phase.COMPLETED,
            **result,
            result_expires_at=task.expires_at(),
            width=task.image_width,
            height=task.image_height,
            size_bytes=task.size_bytes,
            out_format=task.out_format,
            cost=CREDITS_BY_TYPE.get(task.type) if task.type is not None else None,
        )

    def _decode(self, image: str, response: requests.Response) -> bytes:
        try:
            return base64.b64decode(image.split(",", 1)[-1], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self._protocol_error(response, "data.image is not valid base64") from exc


def _too_big(size_bytes: int) -> str:
    return (
        f"image is {size_bytes / 1024 / 1024:.1f} MB; picwish accepts at most "
        f"{MAX_UPLOAD_BYTES // 1024 // 1024} MB"
    )
