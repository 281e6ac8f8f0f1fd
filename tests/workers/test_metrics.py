"""``enhance metrics`` as Prometheus reads it, and the Grafana dashboard built on it."""

from __future__ import annotations

import json
import re

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.system import ROOT, image_bytes
from workers.metrics import JobCollector

pytestmark = pytest.mark.integration

DASHBOARD = ROOT / "ops" / "grafana" / "enhance-queue.json"
HISTOGRAMS = ("enhance_job_duration_seconds", "enhance_provider_duration_seconds",
              "enhance_store_lag_seconds")


def scrape(runtime) -> dict[str, list]:
    """What a Prometheus scrape of ``enhance metrics`` reads: sample name -> samples."""
    registry = CollectorRegistry()
    registry.register(JobCollector(runtime))
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


@pytest.fixture
def one_job_done(system, sandbox):
    system.start_worker()
    [record] = system.wait([system.enqueue(image_bytes(40, 30), "picwish", "hd")])
    assert record.state.value == "succeeded"
    return record


def emitted_names(runtime) -> set[str]:
    """Every sample name the exporter can emit, failures and all, even with no sample yet."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",)}
    return {family.name + suffix for family in JobCollector(runtime).collect()
            for suffix in suffixes[family.type]}


def value(samples, name, **labels) -> float:
    [match] = [s for s in samples[name] if all(s.labels.get(k) == v for k, v in labels.items())]
    return match.value


def test_latency_histograms_by_provider_and_model_queue_depth_and_jobs_by_provider(
        system, one_job_done):
    samples = scrape(system.runtime)

    for metric in HISTOGRAMS:
        assert value(samples, f"{metric}_count", provider="picwish", model="hd") == 1, metric
        assert value(samples, f"{metric}_bucket", provider="picwish", model="hd", le="+Inf") == 1
        assert value(samples, f"{metric}_sum", provider="picwish", model="hd") >= 0
    job_s = value(samples, "enhance_job_duration_seconds_sum", provider="picwish", model="hd")
    parts_s = sum(value(samples, f"{m}_sum", provider="picwish", model="hd")
                  for m in HISTOGRAMS[1:])
    assert job_s >= parts_s  # queued -> succeeded holds the provider's time and the store's
    assert value(samples, "enhance_provider_jobs", provider="picwish", state="succeeded") == 1
    assert value(samples, "enhance_provider_jobs", provider="hitpaw", state="succeeded") == 0
    queues = {s.labels["queue"] for s in samples["enhance_queue_depth"]}
    assert queues >= {"enhance.admit", "enhance.submit", "enhance.poll", "enhance.store",
                      "enhance.maintenance"}
    assert value(samples, "enhance_spend_today", provider="picwish") > 0


def test_the_grafana_dashboard_uses_only_metrics_the_exporter_emits(system, one_job_done):
    emitted = emitted_names(system.runtime)
    assert set(scrape(system.runtime)) <= emitted
    dashboard = json.loads(DASHBOARD.read_text())

    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert len(exprs) >= 10
    used = {name for expr in exprs for name in re.findall(r"\benhance_[a-z_]+", expr)}
    assert used, exprs
    assert not used - emitted, f"not emitted: {sorted(used - emitted)}"
    assert used >= {f"{m}_bucket" for m in HISTOGRAMS} | {"enhance_queue_depth",
                                                          "enhance_provider_jobs",
                                                          "enhance_spend_today"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
