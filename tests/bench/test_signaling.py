"""``crdtsync bench signaling`` for one small run: its structure, never its timings.

It needs y-webrtc's server (``npm ci``); without it, it skips, or fails under ``CI=true`` so
CI cannot pass by skipping.
"""

from __future__ import annotations

import math

from needs import require_found, require_program

from crdtsync.bench import signaling
from crdtsync.bench.report import BenchOptions
from crdtsync.bench.suite import BENCHMARKS

SERVERS = (
    "y-webrtc server",
    "crdtsync",
    "crdtsync native",
    "crdtsync + Redis",
    "crdtsync native + Redis",
)
PER_SERVER = (
    "joins",
    "relay p50",
    "relay p99",
    "relayed",
    "relayed per server CPU-s",
    "server RSS per connection",
)
HOSTILE = (
    "relay p50, crdtsync + hostile mix",
    "relay p99, crdtsync + hostile mix",
    "server RSS growth, hostile mix",
    "non-readers dropped, hostile mix",
    "idle dropped, hostile mix",
)


async def test_signaling_measures_both_servers_and_the_hostile_mix() -> None:
    require_found(signaling.find_ywebrtc_server)
    require_program("redis-server", "redis-server")
    assert BENCHMARKS["signaling"] == "signaling"
    lines: list[str] = []
    result = await signaling.run(
        BenchOptions(runs=1, peers=(40,)),
        lines.append,
        rate=20.0,  # enough relays for the server's CPU time to count (10 ms ticks)
        seconds=1.0,  # a window long enough to hold relays on a busy machine
        idle=20,
        non_reading=4,
        hostile_seconds=1.5,
    )
    assert result.benchmark == "signaling"
    assert result.params["clients"] == 40
    assert set(result.series) == {
        *(f"{figure}, {server}" for server in SERVERS for figure in PER_SERVER),
        *HOSTILE,
    }
    for label, series in result.series.items():
        assert len(series.samples) == 1
        if series.unit == "count":
            assert 0 <= series.samples[0] <= 20
        elif series.unit == "KiB":  # 40 connections are within a garbage collection's noise
            assert math.isfinite(series.samples[0]), label
        else:
            assert series.samples[0] > 0, label
    assert list(result.headline) == [
        "relay_throughput_ratio_to_ywebrtc",
        "p99_relay_ms_crdtsync",
        "p99_relay_ms_ywebrtc",
        "rss_per_connection_kib",
        "rss_growth_with_hostile_mix_kib",
        "p50_relay_ratio_with_redis",
        "p50_relay_ratio_with_redis_native",
    ]
    assert all(math.isfinite(value) for value in result.headline.values())
    assert all(value > 0 for key, value in result.headline.items() if "kib" not in key)
    assert len(lines) == 1
