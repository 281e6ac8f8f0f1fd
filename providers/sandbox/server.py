"""Run the sandbox: in a background thread (``SandboxServer``) or in the foreground (``serve``)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import create_app
from .config import DEFAULT_HITPAW_KEY, DEFAULT_PICWISH_KEY, SandboxConfig
from .records import RequestRecord
from .samples import write_samples
from .state import SandboxState

SHUTDOWN_POLL_S = 0.05  # how often the serving thread checks for stop()


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: the request log is the record."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class SandboxServer:
    """The provider sandbox over HTTP on ``host:port`` (0 = a free port), in a thread.

    Use as a context manager, or call ``start()`` and ``stop()``.
    """

    def __init__(self, config: SandboxConfig | None = None, host: str = "127.0.0.1",
                 port: int = 0, *, quiet: bool = True) -> None:
        self._initial_config = config or SandboxConfig()
        self.host, self._port, self._quiet = host, port, quiet
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._work_dir: Path | None = None
        self.state: SandboxState | None = None

    # --- life cycle --------------------------------------------------------------------
    def start(self) -> SandboxServer:
        """Draw the samples, bind the port and serve from a daemon thread."""
        self._bind()
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        args=(SHUTDOWN_POLL_S,), name="sandbox-http",
                                        daemon=True)
        self._thread.start()
        return self

    def _bind(self) -> None:
        self._work_dir = Path(tempfile.mkdtemp(prefix="enhance-sandbox-"))
        self.state = SandboxState(self._initial_config, self._work_dir)
        write_samples(self.state.samples_dir)
        handler = _QuietHandler if self._quiet else WSGIRequestHandler
        self._server = make_server(self.host, self._port, create_app(self.state),
                                   threaded=True, request_handler=handler)

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        if self._server is None:
            self._bind()
        try:
            self._server.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving and delete every file the sandbox wrote."""
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(timeout=5)
            self._server.server_close()
            self._server, self._thread = None, None
        if self.state is not None:
            self.state.jobs.close()
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- addresses and keys ------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        return self._server.server_port

    @property
    def base_url(self) -> str:
        """``http://host:port`` of both APIs and the ``/_sandbox/`` endpoints."""
        return f"http://{self.host}:{self.port}"

    @property
    def hitpaw_key(self) -> str:
        return self.config.hitpaw_key

    @property
    def picwish_key(self) -> str:
        return self.config.picwish_key

    def sample_url(self, name: str) -> str:
        """The URL of sample image ``name`` (e.g. ``portrait.jpg``)."""
        return f"{self.base_url}/_sandbox/samples/{name}"

    def add_sample(self, name: str, data: bytes) -> str:
        """Serve ``data`` as sample ``name``; return its URL."""
        (self._running_state().samples_dir / name).write_bytes(data)
        return self.sample_url(name)

    # --- control -----------------------------------------------------------------------
    @property
    def config(self) -> SandboxConfig:
        return self.state.config if self.state else self._initial_config

    def configure(self, **changes: Any) -> SandboxConfig:
        """Patch the config at run time (validated; raises ``pydantic.ValidationError``)."""
        if self.state is None:
            self._initial_config = self._initial_config.patched(**changes)
            return self._initial_config
        return self.state.configure(**changes)

    def requests(self) -> list[RequestRecord]:
        """Every request recorded so far, oldest first."""
        return self._running_state().log.all()

    def count(self, provider: str | None = None, kind: str | None = None,
              job_id: str | None = None, status: int | None = None) -> int:
        """How many recorded requests match every given (non-None) field."""
        return self._running_state().log.count(provider=provider, kind=kind,
                                               job_id=job_id, status=status)

    def release(self, within_s: float = 1.0) -> int:
        """Let every job still processing finish within ``within_s`` (see ``JobStore``)."""
        return self._running_state().jobs.release(within_s)

    def reset(self) -> None:
        """Forget jobs, results, the request log and the QPS windows."""
        self._running_state().reset()

    def _running_state(self) -> SandboxState:
        if self.state is None:
            raise RuntimeError("the sandbox is not running")
        return self.state


def serve(config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 8700) -> None:
    """Run the sandbox in the foreground until Ctrl-C (what ``enhance sandbox`` calls)."""
    server = SandboxServer(config, host, port, quiet=False)
    server._bind()
    cfg = server.config
    print(f"provider sandbox on {server.base_url}")
    print(f"  HitPaw key:  {_key_source(cfg.hitpaw_key, DEFAULT_HITPAW_KEY, 'HITPAW_API_KEY')}")
    print(f"  PicWish key: {_key_source(cfg.picwish_key, DEFAULT_PICWISH_KEY, 'PICWISH_API_KEY')}")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # `docker stop` cleans up like Ctrl-C
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _key_source(key: str, default: str, env: str) -> str:
    """Say where a key came from without printing a non-default one."""
    return f"default ({default})" if key == default else f"set (from {env} or the config)"
