"""Writes that must survive a crash of the job store's Redis before anything acts on them.

With ``appendfsync everysec`` (Redis' default) a crash can lose the last second of
acknowledged writes. For most writes that is harmless: reconcile re-drives a job whose
step was lost. For the claim a submit writes before its paid call it is not: if the
claim is lost, the job looks unclaimed after the restart and is paid for again. So that
one write is confirmed durable before the call goes out, in one of two ways:

- ``wait``: ``WAIT <replicas> <timeout_ms>`` after the write: the claim is on that many
  replicas (Redis 7.0 has no ``WAITAOF``; a replica that acknowledged it survives the
  primary's crash and, under Sentinel, becomes the primary).
- ``fsync``: the job store's Redis runs ``appendonly yes`` and ``appendfsync always``:
  every write is on disk before Redis answers. Checked once per process with
  ``CONFIG GET`` (a managed Redis that refuses CONFIG is trusted as configured).

The record ``enqueue`` creates is confirmed the same way before its id is handed out
(``JobStore.create(..., durable=True)``): an id a producer holds must not vanish in a
failover (it did once: ``unknown_job``).

``none`` trusts the server's own configuration, as before. ``NotDurable`` (transient)
means the write happened but is not confirmed: the caller must undo it (release the
claim) and try later, never make the paid call.
"""

from __future__ import annotations

from typing import Literal

import redis

from providers.errors import TransientError

Mode = Literal["none", "wait", "fsync"]


class NotDurable(TransientError):
    """A write the job store could not confirm durable (replicas, or fsync, missing)."""

    code = "store_not_durable"


class Durability:
    """How ``JobStore.update`` / ``create`` with ``durable=True`` confirm their write.

    Args:
        client: the client durable writes go through. For ``wait`` it must hold a single
            connection (``WAIT`` counts the writes of the connection it is sent on).
        mode: ``none``, ``wait`` or ``fsync``.
        replicas: replicas that must acknowledge (``wait``).
        timeout_ms: the longest ``WAIT`` blocks (``wait``).
    """

    def __init__(self, client: redis.Redis, mode: Mode, replicas: int = 1,
                 timeout_ms: int = 100) -> None:
        self.client = client
        self.mode = mode
        self.replicas = replicas
        self.timeout_ms = timeout_ms
        self._fsync_checked = False

    def confirm(self) -> None:
        """Raise ``NotDurable`` unless the client's last write is durable."""
        if self.mode == "wait":
            acked = int(self.client.execute_command("WAIT", self.replicas, self.timeout_ms))
            if acked < self.replicas:
                raise NotDurable(f"claim reached {acked} of {self.replicas} replicas within "
                                 f"{self.timeout_ms} ms")
        elif self.mode == "fsync" and not self._fsync_checked:
            self._check_fsync()
            self._fsync_checked = True

    def _check_fsync(self) -> None:
        try:
            appendonly = self.client.config_get("appendonly").get("appendonly")
            appendfsync = self.client.config_get("appendfsync").get("appendfsync")
        except redis.ResponseError:
            return  # CONFIG is disabled (managed Redis): trust the operator's configuration
        if (appendonly, appendfsync) != ("yes", "always"):
            raise NotDurable(f"CLAIM_DURABILITY=fsync needs the job store's Redis to run "
                             f"appendonly yes and appendfsync always; it runs appendonly "
                             f"{appendonly} and appendfsync {appendfsync}")
