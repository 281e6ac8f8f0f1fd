"""A local, faithful stand-in for the HitPaw and PicWish APIs, over real HTTP.

One Flask app serves both vendors' endpoints from one base URL, runs jobs through their
documented states on a simulated clock, renders real outputs with Pillow, serves them
from disk with a lifetime, injects faults on demand and records every request::

    from providers.sandbox import SandboxConfig, SandboxServer

    with SandboxServer(SandboxConfig(processing_time_s=(0.05, 0.2))) as sb:
        sb.base_url, sb.hitpaw_key, sb.picwish_key
        sb.configure(rate_429=0.5)
        sb.count(provider="hitpaw", kind="submit")

Modules: ``config`` (SandboxConfig), ``catalog`` (models, prices, limits), ``hitpaw`` and
``picwish`` (the APIs), ``gate`` (auth and faults), ``jobs`` (simulation), ``render``
(Pillow), ``fetch`` (downloads), ``admin`` (``/_sandbox/``), ``server`` (threads).
"""

from .config import DEFAULT_HITPAW_KEY, DEFAULT_PICWISH_KEY, SandboxConfig
from .records import RequestRecord
from .server import SandboxServer, serve

__all__ = [
    "DEFAULT_HITPAW_KEY",
    "DEFAULT_PICWISH_KEY",
    "RequestRecord",
    "SandboxConfig",
    "SandboxServer",
    "serve",
]
