"""End to end in separate processes: a signaling server and peers, killed with SIGKILL.

Each peer is ``crdtsync peer`` driven by JSON lines; the server is ``crdtsync signal``.
Everything runs on 127.0.0.1 and every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from crdtsync.testing import processes
from crdtsync.testing.processes import CLI, REPORT_LIMIT, SignalProcess

__all__ = ["CLI", "REPORT_LIMIT", "PeerProcess", "cleanup", "start_server"]

TIMEOUT = 30.0


class PeerProcess(processes.PeerProcess):
    """The package's ``crdtsync peer`` child, with this suite's room and timeouts."""

    @classmethod
    async def start(  # type: ignore[override]
        cls,
        url: str,
        store: Path | None = None,
        *,
        room: str = "e2e",
        options: tuple[str, ...] = (),
    ) -> PeerProcess:
        peer = await super().start(url, room=room, store=store, options=options, timeout=TIMEOUT)
        assert isinstance(peer, PeerProcess)
        return peer


async def start_server(port: int = 0) -> tuple[asyncio.subprocess.Process, str]:
    server = await SignalProcess.start(port)
    return server.process, server.url


@asynccontextmanager
async def cleanup(processes: list[asyncio.subprocess.Process]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                async with asyncio.timeout(TIMEOUT):
                    await process.wait()


async def test_sync_survives_the_server_and_a_newcomer_catches_up() -> None:
    processes: list[asyncio.subprocess.Process] = []
    async with cleanup(processes):
        server, url = await start_server()
        processes.append(server)
        peers = [await PeerProcess.start(url) for _ in range(3)]
        processes += [peer.process for peer in peers]
        for peer in peers:
            await peer.until_peers(lambda linked: len(linked) == 2)
        for index, peer in enumerate(peers):
            await peer.send(append=f" before-{index}")
        for peer in peers:
            await peer.until_text({f"before-{index}" for index in range(3)})

        server.send_signal(signal.SIGKILL)  # the data channels carry on without it
        await server.wait()
        await peers[0].send(append=" after-kill")
        for peer in peers:
            await peer.until_text({"after-kill"})

        port = int(url.rsplit(":", 1)[1])
        server, url = await start_server(port)
        processes.append(server)
        newcomer = await PeerProcess.start(url)
        processes.append(newcomer.process)
        await newcomer.until_peers(lambda linked: len(linked) == 3)
        final = await newcomer.until_text({"before-0", "before-1", "before-2", "after-kill"})
        assert final == await peers[2].text()
        for peer in [*peers, newcomer]:
            await peer.quit()


async def test_a_killed_peer_is_dropped_in_seconds_and_resyncs_on_restart(tmp_path: Path) -> None:
    processes: list[asyncio.subprocess.Process] = []
    async with cleanup(processes):
        server, url = await start_server()
        processes.append(server)
        store = tmp_path / "victim.db"
        alice, victim = await PeerProcess.start(url), await PeerProcess.start(url, store)
        processes += [alice.process, victim.process]
        await alice.until_peers(lambda linked: victim.id in linked)
        await victim.send(append=" from-the-victim")
        await alice.until_text({"from-the-victim"})

        killed_at = time.monotonic()
        await victim.kill()
        await alice.until_peers(lambda linked: victim.id not in linked)
        assert time.monotonic() - killed_at < 15.0  # heartbeat: ~5 s, with generous slack
        await alice.send(append=" while-it-was-dead")

        again = await PeerProcess.start(url, store)  # same document, from its store
        processes.append(again.process)
        text = await again.until_text({"from-the-victim", "while-it-was-dead"})
        assert text == await alice.text()
        await again.quit()
        await alice.quit()


async def test_a_stopped_peer_backs_up_its_link_and_catches_up_after() -> None:
    """SIGSTOP leaves a data channel open but unread: the sender must hold, not queue."""
    processes: list[asyncio.subprocess.Process] = []
    async with cleanup(processes):
        server, url = await start_server()
        processes.append(server)
        alice, bob = await PeerProcess.start(url), await PeerProcess.start(url)
        processes += [alice.process, bob.process]
        await alice.until_peers(lambda linked: bob.id in linked)
        await bob.until_peers(lambda linked: alice.id in linked)
        bulk = {f"bulk-{index}" for index in range(24)}  # 24 x 64 KiB: over the 1 MiB mark
        late = {f"late-{index}" for index in range(100)}
        bob.process.send_signal(signal.SIGSTOP)
        try:
            for word in sorted(bulk):
                await alice.send(append=f" {word} " + "." * 65536)
            # The bulk leaves in a few merged updates: the last may already be held back, or
            # all of it may be in the link's buffer, over the mark. Either way, what follows
            # is held.
            await alice.until_report(
                lambda report: report["congested"] == [bob.id] or report["bytes_sent"] > 24 * 65536,
                timeout=TIMEOUT,
                what="congested or sent 1.5 MiB",
            )
            for word in sorted(late):  # held back and merged while the link is congested
                await alice.send(append=f" {word}")
            await alice.until_report(
                lambda report: report["congested"] == [bob.id], timeout=TIMEOUT, what="congested"
            )
            await alice.until_text(late)
        finally:
            bob.process.send_signal(signal.SIGCONT)
        await bob.until_text(bulk | late)
        await alice.until_report(
            lambda report: report["congested"] == [], timeout=TIMEOUT, what="no longer congested"
        )
        await alice.quit()
        await bob.quit()


KILL_SEED = 20261125
KILL_ROUNDS = 20
DOCS = ("default", "notes/a.md", "notes/b.md", "todo.md")  # the victim types in all four


async def words_in(peer: PeerProcess) -> set[str]:
    """Every word of every document in ``DOCS`` on ``peer``, each tagged with its document."""
    texts = (await peer.report(docs=DOCS))["docs"]
    return {f"{doc_id}:{word}" for doc_id in DOCS for word in texts[doc_id].split()}


async def test_flushed_and_received_edits_survive_sigkill(tmp_path: Path) -> None:
    """A peer typing in several documents is killed at a random point, over and over, and
    restarted from its store."""
    rng = random.Random(KILL_SEED)
    processes: list[asyncio.subprocess.Process] = []
    async with cleanup(processes):
        server, url = await start_server()
        processes.append(server)
        witness = await PeerProcess.start(url)
        processes.append(witness.process)
        await words_in(witness)  # it opens the documents, so it receives them
        store = tmp_path / "victim.db"
        confirmed: set[str] = set()
        for round_ in range(KILL_ROUNDS):
            where = f"seed {KILL_SEED}, round {round_}"
            victim = await PeerProcess.start(url, store)
            processes.append(victim.process)
            kept = await words_in(victim)
            assert confirmed <= kept, f"{where}: lost {sorted(confirmed - kept)}"
            words = [
                (rng.choice(DOCS), f"r{round_}-{index}") for index in range(rng.randint(1, 40))
            ]
            flush_after = rng.randint(0, len(words))
            for index, (doc_id, word) in enumerate(words):
                await victim.send(append=f" {word}", doc=doc_id)
                if index + 1 == flush_after:
                    await victim.send(flush=True)
                    await victim.next_event("flushed")
                    confirmed |= {f"{doc_id}:{word}" for doc_id, word in words[:flush_after]}
            if rng.random() < 0.5:  # sometimes let the edits reach the witness first
                last_doc, last_word = words[-1]
                await witness.until_report(
                    lambda report, d=last_doc, w=last_word: w in report["docs"][d].split(),
                    timeout=TIMEOUT,
                    what="the last word",
                    docs=DOCS,
                )
            await victim.kill()
            received = {word for word in await words_in(witness) if ":r" in word}
            restarted = await PeerProcess.start(url, store)
            processes.append(restarted.process)
            kept = await words_in(restarted)
            assert received <= kept, f"{where}: the witness had {sorted(received - kept)}"
            await restarted.kill()
        final = await PeerProcess.start(url, store)
        processes.append(final.process)
        await final.until_peers(lambda linked: witness.id in linked)
        async with asyncio.timeout(TIMEOUT):  # the two replicas converge, every document
            while True:
                ours = (await final.report(docs=DOCS))["docs"]
                if (
                    confirmed <= await words_in(final)
                    and ours == (await witness.report(docs=DOCS))["docs"]
                ):
                    break
                await asyncio.sleep(0.05)  # a report is a poll of another process
        await final.quit()
        await witness.quit()
