"""``crdtsync chaos``: the plan is a pure function of its seed, and a short seeded run of
real peer processes (SIGKILLed, restarted from their stores, the server restarted) ends
with every flushed edit on every peer."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from crdtsync.chaos import Action, ChaosOptions, plan, run_chaos
from crdtsync.errors import ConfigError

# A seed whose plan of 25 s holds kills, restarts and a server restart (checked below).
CI_SEED = 20261201
CI_PEERS = 4
CI_SECONDS = 25.0
RUN_TIMEOUT = 240.0  # the plan, restarts that take a second each, and the settling


def test_a_seed_replays_the_same_plan_and_another_seed_another() -> None:
    assert plan(7, 5, 60.0) == plan(7, 5, 60.0)
    assert plan(7, 5, 60.0) != plan(8, 5, 60.0)
    steps = plan(7, 5, 60.0)
    assert [step.at for step in steps] == sorted(step.at for step in steps)
    assert all(step.at < 60.0 for step in steps)


def test_a_plan_never_kills_the_last_peer_and_starts_only_killed_ones() -> None:
    for seed in range(20):
        up = set(range(3))
        for step in plan(seed, 3, 30.0):
            if step.action is Action.KILL:
                assert step.peer in up
                up.discard(step.peer)
                assert up, f"seed {seed}: {step} killed the last peer"
            elif step.action is Action.START:
                assert step.peer not in up, f"seed {seed}: {step} starts a running peer"
                up.add(step.peer)
            elif step.action is not Action.RESTART_SERVER:
                assert step.peer in up, f"seed {seed}: {step} on a killed peer"


def test_bad_options_and_a_used_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--peers >= 2"):
        ChaosOptions(peers=1)
    (tmp_path / "peer0.db").write_bytes(b"")
    with pytest.raises(ConfigError, match="earlier run"):
        asyncio.run(run_chaos(ChaosOptions(peers=2, seconds=1.0, workdir=tmp_path), print))


async def test_a_short_seeded_chaos_run_keeps_every_flushed_edit(tmp_path: Path) -> None:
    actions = {step.action for step in plan(CI_SEED, CI_PEERS, CI_SECONDS)}
    assert actions == set(Action)  # the seed still exercises every kind of fault
    command = [sys.executable, "-m", "crdtsync.cli", "chaos", "--peers", str(CI_PEERS)]
    command += ["--seconds", str(CI_SECONDS), "--seed", str(CI_SEED), "--dir", str(tmp_path)]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    async with asyncio.timeout(RUN_TIMEOUT):
        output, _ = await process.communicate()
    text = output.decode()
    print(text)
    assert process.returncode == 0, text
    assert f"seed {CI_SEED}: every flushed edit is on every peer, all replicas equal" in text
