"""``crdtsync chaos``: peer processes with stores over real WebRTC, killed and restarted.

A seed makes the plan: a list of steps (type words on a peer, flush a peer, SIGKILL a peer,
start a killed one again from its store, SIGKILL the signaling server and start it again on
its port), so one seed replays the same schedule of faults; what the processes make of it
(timing, who had linked with whom) is real. At the end every peer is started again and
the run checks that every edit a peer confirmed as flushed is on every peer, and that all
replicas are equal. Each word is ``p<peer>.<n>``, so a missing one names where it came from.
"""

from __future__ import annotations

import asyncio
import enum
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crdtsync.errors import ConfigError, CrdtSyncError
from crdtsync.testing.processes import PeerProcess, SignalProcess

__all__ = ["Action", "ChaosOptions", "ChaosReport", "Step", "plan", "run_chaos"]

ROOM = "chaos"
SETTLE_TIMEOUT = 90.0  # seconds for the healed room to link and converge at the end
STEP_GAP = (0.02, 0.3)  # seconds between steps, drawn uniformly
WORDS_PER_TYPE = (1, 8)
DOWN = (0.1, 2.0)  # seconds the signaling server stays down when restarted
POLL = 0.1  # seconds between reports while waiting for the end state


class Action(enum.Enum):
    TYPE = "type"
    FLUSH = "flush"
    KILL = "kill"  # SIGKILL one peer
    START = "start"  # start a killed peer again, from its store
    RESTART_SERVER = "restart-server"  # SIGKILL the server, start it again after a while


# How often each action is drawn while a peer is up (START comes when one is down).
WEIGHTS = {Action.TYPE: 60, Action.FLUSH: 20, Action.KILL: 6, Action.RESTART_SERVER: 1}
RESTART_CHANCE = 0.3  # per step, that one killed peer is started again


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a plan: at ``at`` seconds, ``action`` on ``peer`` (``count`` words for
    TYPE, seconds down for RESTART_SERVER)."""

    at: float
    action: Action
    peer: int = -1
    count: float = 0

    def __str__(self) -> str:
        target = "" if self.peer < 0 else f" peer{self.peer}"
        extra = f" {self.count:g}" if self.count else ""
        return f"{self.at:7.2f} s {self.action.value}{target}{extra}"


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    peers: int = 5
    seconds: float = 120.0
    seed: int = 0
    workdir: Path | None = None  # stores and logs; None: a temporary directory
    verbose: bool = False  # peers log everything, not only warnings

    def __post_init__(self) -> None:
        if self.peers < 2 or self.seconds <= 0:
            raise ConfigError(
                f"chaos needs --peers >= 2 and --seconds > 0 (got {self.peers}, {self.seconds})"
            )


@dataclass(slots=True)
class ChaosReport:
    """What happened, and whether the end state is right (``problems`` empty)."""

    seed: int
    steps: int = 0
    kills: int = 0
    server_restarts: int = 0
    typed: int = 0
    flushed: int = 0
    settle_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def plan(seed: int, peers: int, seconds: float) -> list[Step]:
    """The schedule of a run: a pure function of its arguments."""
    rng = random.Random(seed)
    up = set(range(peers))
    steps: list[Step] = []
    at = rng.uniform(*STEP_GAP)
    while at < seconds:
        down = sorted(set(range(peers)) - up)
        if down and rng.random() < RESTART_CHANCE:
            peer = rng.choice(down)
            up.add(peer)
            steps.append(Step(at, Action.START, peer))
        else:
            action = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
            if action is Action.RESTART_SERVER:
                steps.append(Step(at, action, count=round(rng.uniform(*DOWN), 2)))
            elif up and not (action is Action.KILL and len(up) == 1):  # keep one peer up
                peer = rng.choice(sorted(up))
                count = rng.randint(*WORDS_PER_TYPE) if action is Action.TYPE else 0
                if action is Action.KILL:
                    up.discard(peer)
                steps.append(Step(at, action, peer, count))
        at += rng.uniform(*STEP_GAP)
    return steps


class _Run:
    """One chaos run's processes and bookkeeping."""

    def __init__(self, options: ChaosOptions, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self.report = ChaosReport(options.seed)
        self.server: SignalProcess | None = None
        self.port = 0
        self.peers: dict[int, PeerProcess] = {}
        self.words = [0] * options.peers  # words typed so far, per peer
        self.pending: list[set[str]] = [set() for _ in range(options.peers)]  # not yet flushed
        self.flushed: set[str] = set()  # confirmed in some peer's store: must be everywhere

    async def start_server(self) -> None:
        self.server = await SignalProcess.start(self.port)
        self.port = self.server.port

    async def start_peer(self, index: int) -> None:
        assert self.server is not None
        self.peers[index] = await PeerProcess.start(
            self.server.url,
            room=ROOM,
            store=self.workdir / f"peer{index}.db",
            name=f"peer{index}",
            log=self.workdir / f"peer{index}.log",
            verbose=self.options.verbose,
        )

    async def kill_peer(self, index: int) -> None:
        await self.peers.pop(index).kill()
        self.pending[index].clear()  # unflushed: may be lost, and that is allowed
        self.report.kills += 1

    async def flush_peer(self, index: int) -> None:
        """Flush a peer: what it was sent so far is in its store, so it must survive."""
        await self.peers[index].flush()
        self.flushed |= self.pending[index]
        self.pending[index].clear()

    async def step(self, step: Step) -> None:
        peer = self.peers.get(step.peer)
        if step.action is Action.TYPE and peer is not None:
            for _ in range(int(step.count)):
                word = f"p{step.peer}.{self.words[step.peer]}"
                self.words[step.peer] += 1
                self.pending[step.peer].add(word)
                await peer.send(append=f" {word}")
                self.report.typed += 1
        elif step.action is Action.FLUSH and peer is not None:
            await self.flush_peer(step.peer)
        elif step.action is Action.KILL and peer is not None:
            await self.kill_peer(step.peer)
        elif step.action is Action.START and step.peer not in self.peers:
            await self.start_peer(step.peer)
        elif step.action is Action.RESTART_SERVER and self.server is not None:
            await self.server.kill()
            await asyncio.sleep(step.count)  # the outage is the step, not a wait for anything
            await self.start_server()
            self.report.server_restarts += 1

    async def settle(self) -> None:
        """Start every peer again, then wait until the room is linked and converged; record
        what is wrong if it never gets there."""
        started = time.monotonic()
        for index in range(self.options.peers):
            if index not in self.peers:
                await self.start_peer(index)
        for index in self.peers:
            await self.flush_peer(index)
        self.report.flushed = len(self.flushed)
        try:
            async with asyncio.timeout(SETTLE_TIMEOUT):
                while True:
                    reports = [await peer.report() for peer in self.peers.values()]
                    texts = {str(report["text"]) for report in reports}
                    linked = all(len(r["peers"]) == self.options.peers - 1 for r in reports)
                    if (
                        linked
                        and len(texts) == 1
                        and self.flushed <= set(next(iter(texts)).split())
                    ):
                        break
                    await asyncio.sleep(POLL)  # a report is a poll of other processes
        except TimeoutError:
            for index, peer in sorted(self.peers.items()):
                report = await peer.report()
                missing = sorted(self.flushed - set(str(report["text"]).split()))
                self.report.problems.append(
                    f"peer{index}: linked with {len(report['peers'])} of "
                    f"{self.options.peers - 1}, {len(missing)} flushed words missing "
                    f"{missing[:5]}"
                )
            texts = {str((await peer.report())["text"]) for peer in self.peers.values()}
            if len(texts) > 1:
                self.report.problems.append(f"{len(texts)} different replicas")
        self.report.settle_seconds = time.monotonic() - started

    async def close(self) -> None:
        for peer in self.peers.values():
            await peer.quit()
        if self.server is not None:
            await self.server.kill()


async def run_chaos(options: ChaosOptions, say: Callable[[str], None]) -> ChaosReport:
    """Carry out the plan of ``options.seed``, settle, check; ``say`` hears progress."""
    steps = plan(options.seed, options.peers, options.seconds)
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="crdtsync-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if any(workdir.glob("peer*.db")):  # a replay starts from empty stores, as the run did
        raise ConfigError(f"{workdir} holds the stores of an earlier run: give an empty one")
    run = _Run(options, workdir)
    say(
        f"seed {options.seed}: {len(steps)} steps over {options.seconds:g} s, "
        f"{options.peers} peers, stores and logs in {workdir}"
    )
    started = time.monotonic()
    current: Step | None = None
    try:
        await run.start_server()
        for index in range(options.peers):
            await run.start_peer(index)
        started = time.monotonic()
        for current in steps:
            delay = current.at - (time.monotonic() - started)
            if delay > 0:
                await asyncio.sleep(delay)  # the plan's clock: steps are due at their times
            await run.step(current)
            run.report.steps += 1
        current = None
        say(f"plan done in {time.monotonic() - started:.1f} s; every peer up again, settling")
        await run.settle()
    except CrdtSyncError as exc:
        where = f" at step {current}" if current is not None else ""
        run.report.problems.append(f"{type(exc).__name__}{where}: {exc}")
    finally:
        await run.close()
    if run.report.ok and options.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return run.report
