"""Scenario 8: webhooks through a crash storm and an outage of the receiver.

The promise: every job that ends tells its webhook so, at least once, signed, whatever
dies on the way. Worker process groups are SIGKILLed on the crash storm's schedule (beat
once) while a loopback receiver answers 503 for ``outage_s``; then the scenario waits for
every job's webhook to be settled (delivered or given up) and counts, at the receiver, the
final events that arrived verified.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ops.bench.measure import percentile, rounded
from ops.bench.runner import Context
from ops.faults import params as P
from ops.faults.outcome import read_records, unknown_outcomes_matched, wait_final
from ops.faults.runner import enqueue_batch, finish, prepare, promises
from ops.faults.scenarios import call_window_s, kill_storm, start_workers
from storage.jobs import JobRecord
from tasks.webhooks import WebhookVerificationFailed, verify_webhook

#: The suite's own signing secret (a loopback receiver of its own: never a real one).
SECRET = "whsec_" + base64.b64encode(b"enhance-queue fault suite secret").decode()


@dataclass
class Arrival:
    event_id: str
    at: float  # Unix time it arrived
    status: int  # what the receiver answered
    verified: bool


class Receiver:
    """A loopback webhook receiver that answers 503 while it is ``down``, else 200."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self.down = False
        receiver, lock = self, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = 503 if receiver.down else 200
                with lock:
                    receiver.arrivals.append(Arrival(self.headers.get("webhook-id", ""),
                                                     time.time(), status, _verified(body, self.headers)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/hooks/enhance"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _verified(body: bytes, headers) -> bool:
    try:
        verify_webhook(body, dict(headers.items()), SECRET)
    except WebhookVerificationFailed:  # counted, not raised
        return False
    return True


def webhooks(ctx: Context, p: P.Webhooks) -> dict:
    settings = {**p.settings, "WEBHOOK_SECRET": SECRET}
    env = prepare(ctx, settings, processing_time_s=list(p.processing_s),
                  create_latency_s=list(p.create_latency_s))
    start_workers(ctx, env, p.workers, p.concurrency)
    ctx.stack.beat(env)
    receiver = Receiver()
    outage = _outage(receiver, p)
    try:
        batch = enqueue_batch(ctx, p.jobs, webhook=receiver.url())
        kill_storm(ctx, env, p)
        figures, ended = finish(ctx, batch, p.final_timeout_s)
        settled = wait_final(batch.ids, p.final_timeout_s, until=_settled)
        records = read_records(batch.ids)
    finally:
        outage.cancel()
        receiver.close()
    kills = [k for k in ctx.stack.kills if k["what"] == "worker"]
    figures.update(unknown_outcomes_matched(ended, kills, call_window_s()))
    figures.update(delivery_figures(records, receiver.arrivals))
    figures.update({"webhooks_settled": settled, "receiver_outage_s": p.outage_s,
                    "worker_kills": len(kills)})
    return {"params": P.as_dict(p), "figures": figures,
            "promises": promises(figures, every_final_state_delivered=(
                figures["final_events_missed"] == 0 and settled),
                every_delivery_verified=figures["deliveries_unverified"] == 0,
                every_unknown_outcome_matched_a_kill=figures["unmatched"] == 0)}


def _outage(receiver: Receiver, p: P.Webhooks) -> threading.Timer:
    """Take the receiver down ``outage_at_s`` from now (the jobs are enqueued next), for
    ``outage_s``."""
    def down() -> None:
        receiver.down = True
        time.sleep(p.outage_s)
        receiver.down = False

    timer = threading.Timer(p.outage_at_s, down)
    timer.daemon = True
    timer.start()
    return timer


def _settled(record: JobRecord) -> bool:
    return record.state.final and (record.notify is None
                                   or record.notify.webhook_outcome is not None)


def delivery_figures(records: list[JobRecord], arrivals: list[Arrival]) -> dict:
    """What reached the receiver, against the jobs' final states: each final event
    (``evt_<job>_<state>``) answered 2xx and verified at least once, or missed."""
    ok = [a for a in arrivals if a.status < 300 and a.verified]
    first_ok: dict[str, float] = {}
    for arrival in ok:
        first_ok[arrival.event_id] = min(first_ok.get(arrival.event_id, arrival.at), arrival.at)
    owed = {f"evt_{r.id}_{r.state.value}": r for r in records if r.state.final}
    after_end = [at - owed[event].transitions[owed[event].state.value].timestamp()
                 for event, at in first_ok.items() if event in owed]
    outcomes = Counter(str(r.notify.webhook_outcome.value if r.notify and r.notify.webhook_outcome
                           else None) for r in records)
    return {
        "final_events_owed": len(owed),
        "final_events_delivered": sum(1 for event in owed if event in first_ok),
        "final_events_missed": sum(1 for event in owed if event not in first_ok),
        "deliveries": len(arrivals),
        "deliveries_answered_503": sum(1 for a in arrivals if a.status == 503),
        "deliveries_unverified": sum(1 for a in arrivals if not a.verified),
        "delivered_again_after_2xx": len(ok) - len(first_ok),
        "webhook_outcomes": dict(sorted(outcomes.items())),
        "end_to_first_2xx_p50_s": rounded(percentile(after_end, 50)),
        "end_to_first_2xx_max_s": rounded(max(after_end, default=0.0)),
    }
