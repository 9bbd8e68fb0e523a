"""A bridge for hosts whose loop is not asyncio (Qt, Tk, Vim/Neovim plugins, plain threads).

``BackgroundPeer`` runs an event loop and a ``Peer`` in a thread of its own. The host never
touches the document directly: ``call(fn)`` runs ``fn(peer)`` on the peer's thread, in one
transaction, and hands back its result. What happens there (document changes, and every
``Peer.events()`` event) is put on ``notifications``, a thread-safe queue the host drains
on its own thread; ``wakeup``, if given, is called after each put so a GUI loop can be
poked (Tk's ``event_generate``, a Qt signal, a pipe). ``close()`` joins the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import pycrdt

from crdtsync.errors import LocalProtocolError, SyncTimeoutError
from crdtsync.host_events import EventStream, HostEvent
from crdtsync.peer import Peer

__all__ = ["LOCAL_ORIGIN", "BackgroundPeer", "DocumentChanged", "Notification"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The origin of the transaction ``call`` runs in: how a change is known to be the host's.
LOCAL_ORIGIN = "crdtsync.threaded.host"


@dataclass(frozen=True, slots=True)
class DocumentChanged:
    """One transaction changed the document: its Yjs update, and whether the host made it
    (through ``call``) or it came from a remote peer."""

    update: bytes
    local: bool


Notification = DocumentChanged | HostEvent


class BackgroundPeer:
    """``with BackgroundPeer(room="notes", signaling=URL) as peer: peer.call(fn)``.

    Takes ``Peer``'s options; ``doc`` (a new one by default) belongs to the peer's thread
    from then on: read and change it only inside ``call``.
    """

    def __init__(
        self,
        doc: pycrdt.Doc[Any] | None = None,
        *,
        wakeup: Callable[[], None] | None = None,
        start_timeout: float = 30.0,
        **peer_options: Any,
    ) -> None:
        self._doc = doc if doc is not None else pycrdt.Doc()
        self._options = peer_options
        self.wakeup = wakeup
        self.start_timeout = start_timeout
        self.notifications: queue.SimpleQueue[Notification] = queue.SimpleQueue()
        self._peer: Peer | None = None
        self._id: str | None = None
        self._in_call = False  # inside call(): changes now are the host's
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, name=f"crdtsync peer {peer_options.get('room')!r}"
        )

    # -- on the host's thread -------------------------------------------------------------

    @property
    def id(self) -> str:
        """The peer's id in its room (kept after close)."""
        if self._id is None:
            raise LocalProtocolError("the BackgroundPeer is not started")
        return self._id

    def start(self) -> None:
        """Start the thread, make and start the peer; raise what starting it raised."""
        if self._thread.ident is not None:
            raise LocalProtocolError("this BackgroundPeer was already started")
        self._thread.start()
        try:
            self._started.result(self.start_timeout)
        except concurrent.futures.TimeoutError as exc:
            if self._started.done():
                self._thread.join()
                raise  # the peer's own timeout
            self.close()
            raise SyncTimeoutError(f"the peer did not start within {self.start_timeout} s") from exc
        except BaseException:
            self._thread.join()
            raise

    def call(self, fn: Callable[[Peer], T], *, timeout: float = 10.0) -> T:
        """Run ``fn(peer)`` on the peer's thread, in one transaction of origin LOCAL_ORIGIN,
        and return its result (or raise its exception). Return copies (``str(text)``), not
        pycrdt objects: those belong to the peer's thread."""

        def in_transaction(peer: Peer) -> T:
            self._in_call = True  # the transaction commits inside: its change is the host's
            try:
                with peer.doc().transaction(origin=LOCAL_ORIGIN):
                    return fn(peer)
            finally:
                self._in_call = False

        return self._submit(in_transaction, timeout)

    def run(self, fn: Callable[[Peer], Coroutine[Any, Any, T]], *, timeout: float = 10.0) -> T:
        """Run the coroutine ``fn(peer)`` on the peer's loop and return its result, e.g.
        ``run(lambda peer: peer.wait_for_peers(1, timeout=5))``."""
        loop, peer = self._running()

        async def on_loop() -> T:
            return await fn(peer)

        future = asyncio.run_coroutine_threadsafe(on_loop(), loop)
        return self._result(future, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Close the peer (as ``Peer.aclose``) and join its thread; idempotent."""
        if self._thread.ident is None or not self._thread.is_alive():
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise SyncTimeoutError(f"the peer's thread did not end within {timeout} s")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _running(self) -> tuple[asyncio.AbstractEventLoop, Peer]:
        loop, peer = self._loop, self._peer
        if loop is None or peer is None or not self._thread.is_alive():
            raise LocalProtocolError("the BackgroundPeer is not running (start it first)")
        if threading.current_thread() is self._thread:
            raise LocalProtocolError("call() and run() are for other threads than the peer's")
        return loop, peer

    def _submit(self, fn: Callable[[Peer], T], timeout: float) -> T:
        loop, peer = self._running()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def on_loop() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(peer))
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(on_loop)
        return self._result(future, timeout)

    @staticmethod
    def _result(future: concurrent.futures.Future[T], timeout: float) -> T:
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            if future.done():
                raise  # fn's own timeout
            future.cancel()
            raise SyncTimeoutError(f"the peer's thread did not answer within {timeout} s") from exc

    # -- on the peer's thread -------------------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            peer = Peer(self._doc, **self._options)
        except BaseException as exc:
            self._started.set_exception(exc)
            return
        events = peer.events()  # before start: no link is missed
        subscription = self._doc.observe(self._on_transaction)
        try:
            try:
                await peer.start()
            except BaseException as exc:
                await peer.aclose()
                self._started.set_exception(exc)
                return
            self._peer, self._id = peer, peer.id
            self._started.set_result(None)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._forward(events))
                await self._stop.wait()
                await peer.aclose()  # ends the event stream, so _forward returns
        finally:
            self._doc.unobserve(subscription)
        # asyncio.run would cancel what is left without a word: say so instead.
        leftovers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if leftovers:
            logger.warning("! tasks still running when the peer closed: %s", leftovers)

    async def _forward(self, events: EventStream) -> None:
        async for event in events:
            self._notify(event)

    def _on_transaction(self, event: pycrdt.TransactionEvent) -> None:
        self._notify(DocumentChanged(event.update, self._in_call))

    def _notify(self, notification: Notification) -> None:
        self.notifications.put(notification)
        if self.wakeup is not None:
            try:
                self.wakeup()
            except Exception:  # the host's callback must not stop the peer
                logger.exception("! the wakeup callback raised")
