"""The ``enhance`` command in a pseudo-terminal, as a person runs it.

``Terminal`` starts ``python -m workers.cli ARGS`` with a pty as its stdin, stdout and
stderr (so ``isatty()`` is true and the status line is redrawn in place), collects what
it writes, and sends Ctrl-C the way a terminal does: SIGINT to its process group.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.system import ROOT


class Terminal:
    def __init__(self, args: list[str], env: dict[str, str], cwd: Path = ROOT) -> None:
        master, slave = os.openpty()
        self._fd = master
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", *args], cwd=cwd,
            env={**env, "COLUMNS": "160", "TERM": "xterm"},
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        self.output = ""

    def expect(self, pattern: str, timeout_s: float = 60) -> re.Match:
        """Read until ``pattern`` appears in the output; fail with the output if it does not."""
        deadline = time.monotonic() + timeout_s
        while not (match := re.search(pattern, self.output)):
            left_s = deadline - time.monotonic()
            if left_s <= 0 or not self._read(min(left_s, 0.5)) and self.proc.poll() is not None:
                raise AssertionError(f"{pattern!r} not seen; output:\n{self.output[-3000:]}")
        return match

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, timeout_s: float = 60) -> int:
        """Read until the process exits; its exit status."""
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        while self._read(0.05):
            pass
        return self.proc.wait(timeout=1)

    def close(self, grace_s: float = 30) -> None:
        """Ctrl-C, then SIGKILL after ``grace_s``: a stack gets the time to stop its children."""
        if self.proc.poll() is None:
            self.interrupt()
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        os.close(self._fd)

    def _read(self, timeout_s: float) -> bool:
        ready, _, _ = select.select([self._fd], [], [], timeout_s)
        if not ready:
            return False
        try:
            data = os.read(self._fd, 65536)
        except OSError:  # EIO: the other side is closed
            return False
        self.output += data.decode(errors="replace")
        return bool(data)
