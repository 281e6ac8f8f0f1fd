"""``.enhance/dev.env``: where ``enhance dev`` leaves its settings for the other commands.

``enhance dev`` writes the settings of the stack it runs (Redis, S3 endpoint, bucket,
sandbox) to ``.enhance/dev.env`` in the directory it was started from, and removes the
file when it stops. Any other ``enhance`` command, run from that directory or below it
with none of the settings that say where things live in its environment, reads that
file and says so on stderr. Nothing else reads it: an exported ``REDIS_URL`` (or any of
``PLACE_VARIABLES``) always wins, whole.
"""

from __future__ import annotations

import os
from pathlib import Path

DEV_DIR = ".enhance"
DEV_ENV = "dev.env"
PID_VARIABLE = "ENHANCE_DEV_PID"  # the ``enhance dev`` process that wrote the file

#: Settings that say where things live: any of them set means "configured, leave it".
PLACE_VARIABLES = ("REDIS_URL", "CELERY_BROKER_URL", "REDIS_SENTINELS", "S3_ENDPOINT_URL",
                   "S3_BUCKET", "HITPAW_BASE_URL", "PICWISH_BASE_URL")


def find_dev_env(start: Path | None = None) -> Path | None:
    """The nearest ``.enhance/dev.env`` in ``start`` (default: the cwd) or its parents."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / DEV_DIR / DEV_ENV
        if candidate.is_file():
            return candidate
    return None


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines; blank lines and ``#`` comments are skipped."""
    values = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name and not name.startswith("#"):
            values[name.strip()] = value.strip()
    return values


def load_dev_env(environ: dict[str, str] | None = None) -> tuple[Path, dict[str, str]] | None:
    """Put the dev stack's settings into ``environ`` when it says nothing of its own.

    Returns the file and what it held, or None when nothing was loaded. Variables already
    set in ``environ`` are kept.
    """
    environ = os.environ if environ is None else environ
    if any(environ.get(name) for name in PLACE_VARIABLES):
        return None
    path = find_dev_env()
    if path is None:
        return None
    values = read_env_file(path)
    for name, value in values.items():
        environ.setdefault(name, value)
    return path, values


def describe(path: Path, values: dict[str, str]) -> str:
    """The stderr line announcing that ``path`` was read (and whether its stack still runs)."""
    shown = os.path.relpath(path)  # ../.enhance/dev.env when run from below
    pid = values.get(PID_VARIABLE, "")
    if pid.isdigit() and not is_alive(int(pid)):
        return (f"enhance: using {shown}, but the `enhance dev` that wrote it (pid {pid}) is not "
                "running: start it again")
    return f"enhance: using the settings of `enhance dev` from {shown}"


def write_dev_env(folder: Path, values: dict[str, str]) -> Path:
    """Write ``values`` (and this process's pid) to ``folder/.enhance/dev.env``, mode 0600."""
    target = folder / DEV_DIR
    target.mkdir(exist_ok=True)
    (target / ".gitignore").write_text("*\n")
    path = target / DEV_ENV
    lines = ["# Written by `enhance dev`; removed when it stops. Every `enhance` command run",
             "# here without REDIS_URL & co. in its environment reads it.",
             f"{PID_VARIABLE}={os.getpid()}"]
    lines += [f"{name}={value}" for name, value in values.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode applies to a new file only, not one left behind
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def is_alive(pid: int) -> bool:
    """True while process ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
