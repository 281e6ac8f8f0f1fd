"""Streaming a result holds a few parts in memory, never the whole object.

moto runs in a subprocess here: in-process it would keep every uploaded byte in this
process's heap and hide what the store itself holds.
"""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc

import pytest
import requests

from storage.objects import ObjectStore, make_s3_client
from tests.storage.test_objects import MIB, leftovers, png_header, whole_png
from workers.embedded import LOOPBACK, free_port

RESULT_BYTES = 200 * 1000 * 1000
PEAK_LIMIT_BYTES = 100 * 1000 * 1000


@pytest.fixture
def moto_subprocess_endpoint(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.slow
def test_a_200_mb_result_streams_with_bounded_memory(moto_subprocess_endpoint):
    client = make_s3_client(moto_subprocess_endpoint)
    client.create_bucket(Bucket="memory")
    store = ObjectStore(client, "memory", part_size_bytes=5 * MIB, max_concurrency=2)
    header = png_header(24000, 18000)  # 432 megapixels, as the largest outputs are
    header, stream = whole_png(24000, 18000, RESULT_BYTES - len(header), max_read_bytes=MIB)

    tracemalloc.start()
    try:
        stored = store.stream_result("big.png", stream, content_type="image/png",
                                     expected_size=RESULT_BYTES, expected_width=24000)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert stored.size_bytes == RESULT_BYTES == store.head("big.png").size_bytes
    assert (stored.width, stored.height) == (24000, 18000)
    print(f"peak traced memory: {peak_bytes / MIB:.1f} MiB")
    assert peak_bytes < PEAK_LIMIT_BYTES, f"peak {peak_bytes / MIB:.0f} MiB"
    assert leftovers(store, "big.png")[1] == []
