"""``crdtsync bench interop`` for one run: its structure, never its timings.

It needs Node peers (``npm ci``) in a loopback-only network namespace (``scripts/loopback-netns``);
without them it skips, or fails under ``CI=true`` so CI cannot pass by skipping.
"""

from __future__ import annotations

import re

import pytest
from needs import require_found

from crdtsync.bench import interop
from crdtsync.bench.report import BenchOptions
from crdtsync.bench.suite import load
from crdtsync.errors import ConfigError

CONTENDERS = ("node-node", "python-answers", "python-offers")


async def test_interop_times_and_counts_every_pair() -> None:
    require_found(interop.preflight)
    lines: list[str] = []
    result = await load("interop")(BenchOptions(runs=1), lines.append)
    assert result.benchmark == "interop"
    assert result.params["edits"] == interop.EDITS
    assert set(result.series) == {
        *CONTENDERS,
        *(f"{name}, our signaling" for name in CONTENDERS),
        *(f"{name} wire" for name in CONTENDERS),
    }
    for label, series in result.series.items():
        assert series.unit == ("bytes" if label.endswith(" wire") else "ms")
        assert len(series.samples) == 1
        assert series.samples[0] > 0
    assert list(result.headline) == [
        "ratio_python_answers_to_node_node",
        "ratio_python_offers_to_node_node",
        "wire_bytes_ratio_python_node_to_node_node",
    ]
    assert all(value > 0 for value in result.headline.values())
    assert len(lines) == 1


def test_interop_refuses_to_run_outside_a_loopback_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("socket.if_nameindex", lambda: [(1, "lo"), (2, "eth0")])
    with pytest.raises(ConfigError, match=re.escape(interop.COMMAND)):
        interop.preflight()


def test_interop_says_to_run_npm_ci_without_node_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interop, "NODE_PACKAGES", ("no-such-package-crdtsync",))
    monkeypatch.setattr("shutil.which", lambda _name: "node")
    with pytest.raises(ConfigError, match=re.escape("run `npm ci`")):
        interop.find_node_modules()
