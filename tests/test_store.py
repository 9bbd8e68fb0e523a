"""The durable store: logs, compaction that survives a kill at any step, clear errors."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pycrdt
import pytest

from crdtsync import ConfigError, Peer, StoreError
from crdtsync.replica import Replica
from crdtsync.store import Store, StoreSettings
from crdtsync.testing import SimNetwork, converged
from crdtsync.testing.virtual_clock import run

STEPS = ("begun", "squashed", "pruned", "committed")


def edits(count: int) -> list[bytes]:
    """``count`` updates of one document, each typing one word."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    text = doc.get("text", type=pycrdt.Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for index in range(count):
        text.insert(len(text), f"w{index} ")
    return updates


def doc_of(updates: list[bytes]) -> pycrdt.Doc[Any]:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    for update in updates:
        doc.apply_update(update)
    return doc


def text_of(updates: list[bytes]) -> str:
    return str(doc_of(updates).get("text", type=pycrdt.Text))


def a_logged_store(path: Path) -> tuple[Store, list[bytes]]:
    """A store at ``path`` whose log holds six edits, and those edits."""
    updates = edits(6)
    store = Store(path)
    store.append("default", updates)
    return store, updates


def test_updates_survive_reopening_and_stay_per_document(tmp_path: Path) -> None:
    path = tmp_path / "peer.db"
    updates = edits(5)
    store = Store(path)
    store.append("a", updates[:3])
    store.append("b", updates[3:])
    store.close()
    again = Store(path)
    assert again.load("a") == updates[:3]
    assert again.load("b") == updates[3:]
    assert again.load("c") == []
    again.close()


def test_compaction_squashes_the_log_into_one_state(tmp_path: Path) -> None:
    store = Store(tmp_path / "peer.db", StoreSettings(compact_after_rows=10))
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    replica = Replica(doc, store=store)
    text = doc.get("text", type=pycrdt.Text)
    for index in range(25):
        text.insert(len(text), f"w{index} ")
        replica.take_outgoing()  # one tick: logged, and squashed once past 10 rows
    assert len(store.load("default")) < 10
    assert text_of(store.load("default")) == str(text)
    store.close()


@pytest.mark.parametrize("step", STEPS)
def test_a_failure_inside_compaction_loses_nothing(tmp_path: Path, step: str) -> None:
    path = tmp_path / "peer.db"
    store, updates = a_logged_store(path)

    def fail(name: str) -> None:
        if name == step:
            raise RuntimeError(f"injected at {name}")

    store.compaction_step = fail
    with pytest.raises(RuntimeError, match="injected"):
        store.compact("default", doc_of(updates).get_update())
    store.close()
    assert text_of(Store(path).load("default")) == text_of(updates)


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_inside_compaction_loses_nothing(tmp_path: Path, step: str) -> None:
    """The process dies (os._exit, nothing cleaned up) between two steps of a compaction."""
    path = tmp_path / "peer.db"
    store, updates = a_logged_store(path)
    store.close()
    script = textwrap.dedent(
        f"""
        import os, pycrdt
        from crdtsync.store import Store
        store = Store({str(path)!r})
        doc = pycrdt.Doc()
        for update in store.load("default"):
            doc.apply_update(update)
        store.compaction_step = lambda name: os._exit(9) if name == {step!r} else None
        store.compact("default", doc.get_update())
        """
    )
    result = subprocess.run([sys.executable, "-c", script], timeout=60, check=False)
    assert result.returncode == 9
    reopened = Store(path)
    assert text_of(reopened.load("default")) == text_of(updates)
    reopened.close()


def test_a_corrupt_or_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all " * 200)
    with pytest.raises(StoreError, match=f"{garbage} is not a crdtsync store"):
        Store(garbage)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    db.close()
    with pytest.raises(StoreError, match="format None"):
        Store(foreign)
    assert garbage.read_bytes().startswith(b"not a database")  # never reset


def test_store_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="compact_after_rows"):
        StoreSettings(compact_after_rows=1)


def test_a_peer_restarts_offline_with_its_work_and_shares_it(tmp_path: Path) -> None:
    path = tmp_path / "peer.db"

    async def scenario() -> None:
        network = SimNetwork(seed=8)
        doc: pycrdt.Doc[Any] = pycrdt.Doc()
        async with Peer(doc, room="notes", network=network, store=path) as alone:
            doc.get("text", type=pycrdt.Text).insert(0, "kept offline")
            await alone.flush()
        again: pycrdt.Doc[Any] = pycrdt.Doc()
        restarted = Peer(again, room="notes", network=network, store=path)
        assert str(again.get("text", type=pycrdt.Text)) == "kept offline"  # before connecting
        other: pycrdt.Doc[Any] = pycrdt.Doc()
        async with restarted, Peer(other, room="notes", network=network) as reader:
            await reader.wait_for(lambda: converged([again, other]), timeout=10, what="sync")

    run(scenario())


def test_flush_needs_a_store() -> None:
    async def scenario() -> None:
        async with Peer(pycrdt.Doc(), room="notes", network=SimNetwork()) as peer:
            with pytest.raises(ConfigError, match="needs a store"):
                await peer.flush()

    run(scenario())
