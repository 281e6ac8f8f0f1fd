"""Logging: readable lines in a terminal by default, one JSON object per line when asked.

``LOG_FORMAT=json`` turns every record into a JSON object; the job-transition lines carry
their fields (job id, provider, state, duration, cost) under ``job``. Celery's own logging
set-up is replaced by this one (the ``setup_logging`` signal), so workers, beat and the
CLI log alike.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from celery.signals import setup_logging

from workers.settings import Settings, get_settings

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and job fields."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job = getattr(record, "job", None)
        if job:
            data.update(job)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(settings: Settings) -> None:
    """Send every log record to stderr in the configured format and level."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # Python warnings (Celery's SecurityWarning, deprecations) would otherwise be written
    # raw to stderr, several lines each, in the middle of a JSON log stream.
    logging.captureWarnings(True)
    for noisy in ("botocore", "urllib3", "s3transfer", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@setup_logging.connect
def _celery_setup_logging(**_: object) -> None:
    configure_logging(get_settings())
