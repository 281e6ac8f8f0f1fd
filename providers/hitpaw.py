"""HitPaw photo enhancer client (``POST /api/photo-enhancer``, ``POST /api/task-status``).

Follows /work/shared/provider-api/hitpaw-photo-enhancer.md including its reader's notes:
the response is read from the documented ``data`` envelope only, the model table is the
list of valid models, and an unknown job status is a ``ProtocolError``, never success.
Every documented ``error_code`` is mapped in ``HITPAW_ERRORS``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import requests
from pydantic import BaseModel, SecretStr, ValidationError

from providers.base import ImageInfo, JobStatus, ModelInfo, Phase, Provider, Submission
from providers.errors import EnhanceError, InvalidInput, ProtocolError, ProviderJobFailed
from providers.hitpaw_api import (
    EXTENSIONS,
    FAILED,
    HITPAW_ERRORS,
    IN_PROGRESS,
    LIMITS_MP,
    MODELS,
    OPTIONS,
    SERVER_ERROR_CODES,
    HitPawRequest,
    HitPawSubmitted,
    HitPawTaskStatus,
    as_int,
    status_for,
)
from providers.http import (
    DEFAULT_MAX_ANSWER_BYTES,
    ApiSession,
    body_excerpt,
    error_class_for_status,
    json_body,
    parse_retry_after,
)
from providers.images import extension_for_format, extension_from_url, normalize_extension
from providers.validation import (
    check_options,
    describe_answer_errors,
    format_mp,
    pydantic_errors_as_invalid_input,
    vendor_message,
)

_Answer = TypeVar("_Answer", bound=BaseModel)


class HitPawClient(Provider):
    """Client of the HitPaw photo enhancer API.

    Args:
        api_key: The ``Apikey`` header value.
        base_url: The API's base URL.
        connect_timeout_s: Seconds to wait for a connection.
        read_timeout_s: Seconds to wait for an answer.
        result_ttl_s: How long a ``res_url`` is assumed downloadable (undocumented).
        deadline_s: Seconds one call may take in all (see ``ApiSession``).
        max_answer_bytes: The largest answer read; larger is a ``ProtocolError``.
        session: A ``requests.Session`` to use (the caller keeps ownership of it).
    """

    name: ClassVar[str] = "hitpaw"
    MODELS: ClassVar[dict[str, ModelInfo]] = MODELS
    DEFAULT_MODEL: ClassVar[str] = "general_2x"
    OPTION_DEFAULTS: ClassVar[dict[str, Any]] = {"exif": False, "dpi": None}

    @classmethod
    def output_options(cls, options: dict[str, Any],
                       image_info: ImageInfo | None = None) -> dict[str, Any]:
        """As the base class, with ``extension`` spelt one way (".JPG" is ".jpg") and,
        when left out, the one the image's own format gives."""
        options = dict(options)
        if options.get("extension"):
            options["extension"] = normalize_extension(str(options["extension"]))
        elif image_info is not None:
            options["extension"] = extension_for_format(image_info.format)
        return super().output_options(options, image_info)

    #: HitPaw's 502 has come after the job was created (and charged): not in the list.
    SUBMIT_NOT_TAKEN_STATUSES: ClassVar[frozenset[int]] = frozenset({408, 429, 503})

    @classmethod
    def submit_not_taken(cls, exc: EnhanceError) -> bool:
        """As ``Provider.submit_not_taken``; a 1005xxxxx code (internal error, 100500007
        "operation timeout") comes from HitPaw itself, after it may have run the job."""
        if exc.vendor_code is not None and as_int(exc.vendor_code) in SERVER_ERROR_CODES:
            return False
        return super().submit_not_taken(exc)

    def __init__(
        self,
        api_key: str | SecretStr,
        base_url: str = "https://api-base.hitpaw.com",
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        result_ttl_s: int = 86400,
        deadline_s: float | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        session: requests.Session | None = None,
    ) -> None:
        self.result_ttl_s = result_ttl_s
        self._http = ApiSession(
            self.name,
            base_url,
            "Apikey",
            api_key,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            deadline_s=deadline_s,
            max_answer_bytes=max_answer_bytes,
            session=session,
        )

    def __repr__(self) -> str:
        return f"HitPawClient(base_url={self._http.base_url!r})"

    # --- Building and validating a request -----------------------------------------------

    def build_request(
        self,
        model: str | None,
        options: dict[str, Any],
        *,
        image_url: str | None = None,
        image_file: bytes | None = None,
        image_info: ImageInfo | None = None,
    ) -> HitPawRequest:
        """Build a ``HitPawRequest``; raise ``InvalidInput`` naming the broken limit.

        Options: ``extension`` (".jpg"; else from ``image_info`` or the URL path),
        ``exif`` (bool), ``dpi`` (int; dropped for generative models).
        """
        info = self._model(model or self.default_model())
        check_options(self.name, options, OPTIONS)
        url = self._source_url(image_url, image_file)
        extension = self._extension(options, url, image_info)
        if image_info is not None:
            self._check_limits(info, image_info)
        with pydantic_errors_as_invalid_input(self.name):
            return HitPawRequest(
                model_name=info.name,
                img_url=url,
                extension=extension,
                exif=options.get("exif", False),
                dpi=options.get("dpi"),
            )

    def _model(self, name: str) -> ModelInfo:
        if name not in MODELS:
            raise InvalidInput(
                f"hitpaw has no model {name!r}; models: {', '.join(MODELS)}", self.name
            )
        return MODELS[name]

    def _source_url(self, image_url: str | None, image_file: bytes | None) -> str:
        if image_file is not None:
            raise InvalidInput(
                "hitpaw takes the image only as a URL (img_url); image_file is not supported",
                self.name,
            )
        if not image_url:
            raise InvalidInput("hitpaw needs image_url", self.name)
        return image_url

    def _extension(self, options: dict[str, Any], url: str, image_info: ImageInfo | None) -> str:
        if options.get("extension"):
            extension = normalize_extension(str(options["extension"]))
        elif image_info is not None:
            extension = extension_for_format(image_info.format) or f".{image_info.format.lower()}"
        else:
            extension = extension_from_url(url)
        if extension is None:
            raise InvalidInput(
                "hitpaw needs the image's extension: pass options['extension'] or image_info "
                "(the URL path has none)",
                self.name,
            )
        if extension not in EXTENSIONS:
            raise InvalidInput(
                f"extension {extension} is not accepted by hitpaw; accepted: "
                f"{', '.join(EXTENSIONS)}",
                self.name,
            )
        return extension

    def _check_limits(self, info: ModelInfo, image: ImageInfo) -> None:
        max_in_mp, max_out_mp = LIMITS_MP[info.category]
        in_mp = image.megapixels
        if in_mp > max_in_mp:
            raise InvalidInput(
                f"input is {format_mp(in_mp, max_in_mp)} MP ({image.width} x {image.height}); "
                f"{info.name} accepts at most {max_in_mp:g} MP",
                self.name,
            )
        out_mp = in_mp * info.scale**2
        if out_mp > max_out_mp:
            raise InvalidInput(
                f"output would be {format_mp(out_mp, max_out_mp)} MP "
                f"({image.width * info.scale} x {image.height * info.scale}); "
                f"{info.name} produces at most {max_out_mp:g} MP",
                self.name,
            )

    # --- Talking to HitPaw ---------------------------------------------------------------

    def submit(self, request: HitPawRequest) -> Submission:  # type: ignore[override]
        """Send the job once (coins are charged now) and return its id and cost."""
        if not isinstance(request, HitPawRequest):
            raise TypeError(f"expected a HitPawRequest, got {type(request).__name__}")
        response = self._http.request("POST", "/api/photo-enhancer", json=request.payload())
        submitted = self._parse(HitPawSubmitted, self._data(response), response)
        return Submission(
            provider=self.name, job_id=submitted.job_id, cost=submitted.consume_coins
        )

    def query(self, job_id: str) -> JobStatus:
        """Ask once for the job's status."""
        if not job_id:
            raise InvalidInput("hitpaw: empty job id", self.name)
        response = self._http.request("POST", "/api/task-status", json={"job_id": job_id})
        task = self._parse(HitPawTaskStatus, self._data(response), response)
        return self._job_status(job_id, task, response)

    def close(self) -> None:
        self._http.close()

    def _job_status(
        self, job_id: str, task: HitPawTaskStatus, response: requests.Response
    ) -> JobStatus:
        status = task.status
        common = {"provider": self.name, "job_id": job_id, "raw_status": status}
        if status == "COMPLETED":
            url = task.res_url
            if not url:
                raise self._protocol_error(response, "COMPLETED without data.res_url")
            expires_at = datetime.now(UTC) + timedelta(seconds=self.result_ttl_s)
            return JobStatus(
                **common, phase=Phase.COMPLETED, result_url=url, result_expires_at=expires_at
            )
        if status in FAILED:
            return JobStatus(
                **common,
                phase=Phase.FAILED,
                error_code=ProviderJobFailed.code,
                error_message=f"hitpaw reported the job {status}",
            )
        if status in IN_PROGRESS:
            return JobStatus(**common, phase=Phase.IN_PROGRESS)
        raise self._protocol_error(response, f"unknown job status {status!r}")

    # --- Reading answers -----------------------------------------------------------------

    def _parse(self, model: type[_Answer], data: dict[str, Any],
               response: requests.Response) -> _Answer:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise self._protocol_error(
                response, f"invalid answer: {describe_answer_errors(exc)}") from exc

    def _data(self, response: requests.Response) -> dict[str, Any]:
        """The ``data`` of a success envelope; any documented error shape is raised."""
        body = json_body(response)
        if isinstance(body, dict) and "error_code" in body:
            raise self._error(response, body["error_code"], body.get("message"))
        if isinstance(body, dict) and "code" in body:
            if as_int(body["code"]) != 200:
                raise self._error(response, body["code"], body.get("message"))
            if response.status_code == 200 and isinstance(body.get("data"), dict):
                return body["data"]
        if not response.ok:
            raise self._error(response, None, None)
        raise self._protocol_error(response, _shape_problem(response))

    def _error(self, response: requests.Response, code: Any, message: Any) -> EnhanceError:
        vendor_code = as_int(code)
        cls = HITPAW_ERRORS.get(vendor_code) if vendor_code is not None else None
        if cls is None:
            cls = error_class_for_status(status_for(vendor_code, response.status_code))
        text = vendor_message(message)
        return cls(
            f"hitpaw: {text} (error_code {code}, HTTP {response.status_code})",
            self.name,
            code if isinstance(code, int | str) else None,
            response.status_code,
            parse_retry_after(response.headers.get("Retry-After")),
            body_excerpt(response),
        )

    def _protocol_error(self, response: requests.Response, what: str) -> ProtocolError:
        return ProtocolError(
            f"hitpaw: {what} (HTTP {response.status_code})",
            self.name,
            None,
            response.status_code,
            None,
            body_excerpt(response),
        )


def _shape_problem(response: requests.Response) -> str:
    if response.status_code != 200:  # success comes only as HTTP 200
        return f"undocumented HTTP status {response.status_code}"
    return "response of no documented shape"
