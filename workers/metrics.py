"""Job-level figures for operators: ``enhance stats`` and Prometheus metrics.

Flower shows tasks; these show jobs. Every figure is read from Redis (and the broker, for
queue depths) at the time it is asked for, so they are the same whichever process serves
them and add up across every worker: serve them from one process (``enhance metrics``),
not from each worker. ``ops/grafana/enhance-queue.json`` is a dashboard built on them.

Latency histograms (succeeded jobs, by provider and model; ``storage.stats``):
``enhance_job_duration_seconds`` (queued to succeeded), ``enhance_provider_duration_seconds``
(submitted to the poll that saw it done), ``enhance_store_lag_seconds`` (that poll to stored).
"""

from __future__ import annotations

import logging

from prometheus_client import start_http_server
from prometheus_client.core import (
    REGISTRY,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from storage.jobs import JobState
from storage.notifications import WebhookOutcome
from storage.stats import histograms
from tasks import admission, spend
from workers.constants import ALL_QUEUES
from workers.runtime import Runtime, get_runtime

log = logging.getLogger("enhance.metrics")
#: Histogram name in the job store -> (metric name, help).
HISTOGRAMS = {
    "job": ("enhance_job_duration_seconds", "Succeeded jobs: queued to succeeded"),
    "provider": ("enhance_provider_duration_seconds",
                 "Succeeded jobs: submitted to the poll that saw the provider done"),
    "store_lag": ("enhance_store_lag_seconds",
                  "Succeeded jobs: provider done (as polled) to stored in S3"),
}

PROVIDERS = ("hitpaw", "picwish")


def collect_stats(rt: Runtime) -> dict[str, dict[str, float]]:
    """Jobs by state, provider requests, 429s, cost, reuse, results stored and expired, store lag."""
    counts = rt.jobs.counts()
    raw = rt.stats.read()
    figures: dict[str, dict[str, float]] = {"jobs": {s.value: counts[s.value] for s in JobState}}
    for name in PROVIDERS:
        figures[name] = {
            "submits": raw.get(f"requests:{name}:submit", 0),
            "polls": raw.get(f"requests:{name}:poll", 0),
            "rate_limited": raw.get(f"rate_limited:{name}", 0),
            "submit_outcome_unknown": raw.get(f"submit_outcome_unknown:{name}", 0),
            "cost": raw.get(f"cost:{name}", 0),
            "in_flight": rt.jobs.in_flight(name),
            "reused": raw.get(f"reused:{name}", 0),
            "cost_saved": raw.get(f"saved:{name}", 0),
            **_admission_figures(rt, name),
        }
    lag_count = raw.get("store_lag_count", 0)
    figures["results"] = {
        "stored": raw.get("stored", 0),
        "expired": raw.get("failed:result_expired", 0),
        "store_lag_avg_s": round(raw.get("store_lag_s_sum", 0) / lag_count, 3) if lag_count else 0,
    }
    figures["failures"] = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("failed:")}
    figures["notify"] = {"owed": rt.jobs.notifications_owed(),
                         **{o.value: raw.get(f"webhook:{o.value}", 0) for o in WebhookOutcome}}
    return figures


def _admission_figures(rt: Runtime, provider: str) -> dict[str, float]:
    """Jobs waiting for admission per lane, slots held, the pause, spend against the cap."""
    waiting = admission.waiting(rt, provider)
    limit = rt.settings.daily_limit(provider)
    return {
        "waiting_interactive": waiting["interactive"],
        "waiting_batch": waiting["batch"],
        "admitted": admission.admitted_count(rt, provider),
        "paused_out_of_credit": 1 if spend.paused(rt, provider) else 0,
        "held_by_operator": 1 if spend.held(rt, provider) else 0,
        "spent_today": spend.spent_today(rt, provider).get("total", 0.0),
        "daily_limit": -1 if limit is None else limit,  # -1: no cap
    }


class JobCollector:
    """A Prometheus collector that reads ``collect_stats`` at every scrape."""

    def __init__(self, runtime: Runtime | None = None) -> None:
        self._runtime = runtime

    def collect(self):
        rt = self._runtime or get_runtime()
        figures = collect_stats(rt)
        jobs = GaugeMetricFamily("enhance_jobs", "Jobs in each state now", labels=["state"])
        for state, value in figures["jobs"].items():
            jobs.add_metric([state], value)
        yield jobs
        requests = CounterMetricFamily("enhance_provider_requests", "Provider API requests",
                                       labels=["provider", "kind"])
        limited = CounterMetricFamily("enhance_provider_rate_limited", "429s received",
                                      labels=["provider"])
        cost = CounterMetricFamily("enhance_provider_cost", "Coins/credits charged",
                                   labels=["provider"])
        unknown = CounterMetricFamily(
            "enhance_submit_outcome_unknown",
            "Submits that failed without proving they were not taken (may be charged)",
            labels=["provider"])
        for name in PROVIDERS:
            requests.add_metric([name, "submit"], figures[name]["submits"])
            requests.add_metric([name, "poll"], figures[name]["polls"])
            limited.add_metric([name], figures[name]["rate_limited"])
            cost.add_metric([name], figures[name]["cost"])
            unknown.add_metric([name], figures[name]["submit_outcome_unknown"])
        in_flight = GaugeMetricFamily("enhance_jobs_in_flight",
                                      "Jobs the provider is working on now", labels=["provider"])
        for name in PROVIDERS:
            in_flight.add_metric([name], figures[name]["in_flight"])
        reused = CounterMetricFamily("enhance_jobs_reused",
                                     "Jobs settled from an identical job's result, unpaid",
                                     labels=["provider"])
        saved = CounterMetricFamily("enhance_provider_cost_saved",
                                    "Coins/credits not spent thanks to reuse", labels=["provider"])
        for name in PROVIDERS:
            reused.add_metric([name], figures[name]["reused"])
            saved.add_metric([name], figures[name]["cost_saved"])
        yield from (requests, limited, cost, unknown, in_flight, reused, saved)
        yield from _admission_metrics(figures)
        failures = CounterMetricFamily("enhance_job_failures", "Jobs failed, by error code",
                                       labels=["code"])
        for code, value in sorted(figures["failures"].items()):
            failures.add_metric([code], value)
        yield failures
        results = figures["results"]
        yield CounterMetricFamily("enhance_results_stored", "Results stored", value=results["stored"])
        yield CounterMetricFamily("enhance_results_expired", "Results lost to expiry",
                                  value=results["expired"])
        yield GaugeMetricFamily("enhance_store_lag_avg_seconds",
                                "Mean time from provider completion to stored",
                                value=results["store_lag_avg_s"])
        yield from _notify_metrics(figures["notify"])
        yield _jobs_by_provider(rt)
        yield from _latency_histograms(rt)
        if (depths := queue_depths()) is not None:
            depth = GaugeMetricFamily("enhance_queue_depth",
                                      "Messages waiting in each Celery queue (not countdowns "
                                      "a worker holds)", labels=["queue"])
            for queue, count in depths.items():
                depth.add_metric([queue], count)
            yield depth


def _notify_metrics(notify: dict[str, float]):
    attempts = CounterMetricFamily("enhance_webhook_attempts",
                                   "Webhook delivery attempts, by outcome", labels=["outcome"])
    for outcome in WebhookOutcome:
        attempts.add_metric([outcome.value], notify[outcome.value])
    yield attempts
    yield GaugeMetricFamily("enhance_notifications_owed",
                            "Ended jobs whose webhook or on_done callback is still owed",
                            value=notify["owed"])


def _jobs_by_provider(rt: Runtime) -> GaugeMetricFamily:
    family = GaugeMetricFamily("enhance_provider_jobs", "Jobs in each state now, by provider",
                               labels=["provider", "state"])
    counts = rt.jobs.counts()
    for name in PROVIDERS:
        for state in JobState:
            family.add_metric([name, state.value], counts.get(f"{name}:{state.value}", 0))
    return family


def _latency_histograms(rt: Runtime):
    found = histograms(rt.stats.read())
    for key, (metric, help_text) in HISTOGRAMS.items():
        family = HistogramMetricFamily(metric, help_text, labels=["provider", "model"])
        for (name, labels), entry in sorted(found.items()):
            if name == key and len(labels) == 2:
                family.add_metric(list(labels), entry["buckets"], entry["sum"])
        yield family


def queue_depths() -> dict[str, int] | None:
    """Messages waiting in each of the project's queues; None when the broker does not answer.

    A queue nothing was ever sent to does not exist yet on the broker: it counts 0.
    """
    from amqp.exceptions import ChannelError
    from kombu.exceptions import OperationalError

    from workers.app import app

    depths = {}
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)
            for queue in ALL_QUEUES:
                channel = conn.channel()  # a failed passive declare closes an AMQP channel
                try:
                    depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
                except ChannelError:
                    depths[queue] = 0
                finally:
                    channel.close()
    except (OperationalError, OSError) as exc:
        log.warning("queue depths unknown: the broker does not answer (%s)", exc)
        return None
    return depths


def _admission_metrics(figures):
    waiting = GaugeMetricFamily("enhance_admission_waiting", "Jobs waiting for admission",
                                labels=["provider", "lane"])
    paused = GaugeMetricFamily("enhance_admission_paused",
                               "1 while the provider is paused for lack of credit",
                               labels=["provider"])
    held = GaugeMetricFamily("enhance_admission_held",
                             "1 while the operator holds the provider (enhance pause)",
                             labels=["provider"])
    spent = GaugeMetricFamily("enhance_spend_today", "Coins/credits spent this UTC day",
                              labels=["provider"])
    limit = GaugeMetricFamily("enhance_spend_daily_limit",
                              "Daily spend cap (-1: none)", labels=["provider"])
    for name in PROVIDERS:
        for lane in ("interactive", "batch"):
            waiting.add_metric([name, lane], figures[name][f"waiting_{lane}"])
        paused.add_metric([name], figures[name]["paused_out_of_credit"])
        held.add_metric([name], figures[name]["held_by_operator"])
        spent.add_metric([name], figures[name]["spent_today"])
        limit.add_metric([name], figures[name]["daily_limit"])
    return waiting, paused, held, spent, limit


def serve_metrics(port: int, address: str = "127.0.0.1") -> None:
    """Serve the job metrics on ``port`` until interrupted."""
    REGISTRY.register(JobCollector())
    _server, thread = start_http_server(port, addr=address)
    thread.join()  # serves in that thread until the process is stopped
