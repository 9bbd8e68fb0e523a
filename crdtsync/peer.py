"""The public facade: a workspace of ``pycrdt.Doc`` documents kept in sync with a room.

``Peer`` wires replicas, their presence and a mesh over a transport: WebRTC data channels
found through a signaling server (``signaling=URL``, or a list of URLs to fail over
between), or the simulated network (``network=SimNetwork(...)``). ``Peer(doc, ...)`` syncs
one document (the workspace's ``"default"``); ``Peer(room=...)`` and ``await
peer.open(doc_id)`` sync as many as the host opens, all over one link per remote peer.
"""

from __future__ import annotations

import os
import random
import ssl as ssl_module
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self

import pycrdt

from crdtsync.errors import ConfigError, LocalProtocolError
from crdtsync.host_events import DEFAULT_MAX_QUEUED, ConnectionState, EventStream, HostEvents
from crdtsync.mesh import (
    DEFAULT_MAX_CONNS,
    DEFAULT_PRESENCE_TIMEOUT,
    Mesh,
    MeshSettings,
    native_link_core,
)
from crdtsync.protocol.batching import DEFAULT_BATCH_WINDOW
from crdtsync.protocol.link import LinkCore, LinkSettings
from crdtsync.protocol.sync import DocumentAccess
from crdtsync.protocol.ywebrtc_link import YWebrtcLinkProtocol
from crdtsync.replica import Replica
from crdtsync.signaling.identity import Identity
from crdtsync.store import Store, StoreSettings
from crdtsync.subdoc_loader import SubdocLoader
from crdtsync.subdocs import is_subdoc_id
from crdtsync.transport.base import Connector
from crdtsync.transport.ice_config import IceServer, IceTransportPolicy
from crdtsync.transport.memory import SimNetwork
from crdtsync.transport.stats import LinkStats
from crdtsync.transport.webrtc import WebRTCConnector
from crdtsync.transport.ywebrtc import YWebrtcConnector
from crdtsync.workspace import (
    DEFAULT_DOC_ID,
    SharePolicy,
    StoredDocuments,
    check_doc_id,
    share_everything,
)

__all__ = ["DIALECTS", "Dialect", "Peer"]

Dialect = Literal["crdtsync", "y-webrtc"]
DIALECTS: tuple[Dialect, ...] = ("crdtsync", "y-webrtc")


def _ywebrtc_link_core(
    local_id: str, documents: Mapping[str, DocumentAccess], remote_id: str, _: LinkSettings
) -> LinkCore:
    return YWebrtcLinkProtocol(local_id, documents, expected_peer=remote_id)


class Peer:
    """A collaborator in a room: ``async with Peer(doc, room="notes", network=net) as peer``,
    or a workspace: ``async with Peer(room="notes", network=net) as peer`` then
    ``doc = await peer.open("readme.md")``."""

    def __init__(
        self,
        doc: pycrdt.Doc[Any] | None = None,
        *,
        room: str,
        network: SimNetwork | None = None,
        signaling: str | Sequence[str] | None = None,
        ice_servers: Sequence[str | IceServer] = (),
        ice_transport_policy: IceTransportPolicy = "all",
        host_addresses: Sequence[str] | None = None,
        token: str | None = None,
        password: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        identity: Identity | None = None,
        max_conns: int = DEFAULT_MAX_CONNS,
        link_settings: LinkSettings | None = None,
        presence_timeout: float = DEFAULT_PRESENCE_TIMEOUT,
        batch_window: float = DEFAULT_BATCH_WINDOW,
        store: str | os.PathLike[str] | None = None,
        store_settings: StoreSettings | None = None,
        rng: random.Random | None = None,
        dialect: Dialect = "crdtsync",
        share: SharePolicy = share_everything,
        keep_all: bool = False,
    ) -> None:
        if dialect not in DIALECTS:
            raise ConfigError(f"dialect must be one of {DIALECTS} (got {dialect!r})")
        if not room:
            raise ConfigError("room must be a non-empty string")
        if (network is None) == (signaling is None):
            raise ConfigError(
                "give exactly one of network= (a SimNetwork) or signaling= (a URL or URLs)"
            )
        if network is not None and (password, token, ssl) != (None, None, None):
            raise ConfigError("password=, token= and ssl= are for signaling=, not network=")
        if network is not None and (ice_servers, ice_transport_policy) != ((), "all"):
            raise ConfigError("ice_servers= and ice_transport_policy= are for signaling=")
        if keep_all and store is None:
            raise ConfigError("keep_all= keeps documents in the store: give store= too")
        self.room = room
        self._dialect = dialect
        self._connector: Connector
        if dialect == "y-webrtc":
            # What y-webrtc peers cannot have: our proven identities, our link settings.
            for option, value in (("identity", identity), ("link_settings", link_settings)):
                if value is not None:
                    raise ConfigError(
                        f"{option}= is not for dialect='y-webrtc' (its peer ids are random "
                        "UUIDs and its links have no envelope)"
                    )
            if signaling is None:
                raise ConfigError("dialect='y-webrtc' needs signaling= (a y-webrtc server URL)")
            if doc is None or keep_all or share is not share_everything:
                raise ConfigError(
                    "a y-webrtc room is one document: Peer(doc, dialect='y-webrtc'), "
                    "without keep_all= or share="
                )
            self._connector = YWebrtcConnector(
                signaling,
                room,
                token=token,
                password=password,
                ssl=ssl,
                ice_servers=ice_servers,
                ice_transport_policy=ice_transport_policy,
                host_addresses=host_addresses,
                max_conns=max_conns,
                rng=rng,
            )
        elif network is not None:
            self._connector = network.connector(room)
            rng = rng or network.derive_rng()
        else:
            assert signaling is not None
            self._connector = WebRTCConnector(
                signaling,
                room,
                identity=identity,
                token=token,
                password=password,
                ssl=ssl,
                ice_servers=ice_servers,
                ice_transport_policy=ice_transport_policy,
                host_addresses=host_addresses,
            )
        # Opened and loaded first: a bad file fails here, and the doc holds its saved work
        # before any peer is linked.
        self._store = None if store is None else Store(store, store_settings)
        stored = None if self._store is None else StoredDocuments(self._store, keep_all=keep_all)
        self._mesh = Mesh(
            self._connector,
            settings=MeshSettings(
                max_conns=max_conns,
                presence_timeout=presence_timeout,
                batch_window=batch_window,
                link=link_settings or LinkSettings(),
            ),
            rng=rng,
            link_core=_ywebrtc_link_core if dialect == "y-webrtc" else native_link_core,
            share=share,
            serve=None if stored is None else stored.serve,
        )
        self._events = HostEvents(
            self._mesh, signaling_connected=None if network is not None else False
        )
        self._workspace = self._mesh.workspace
        self._workspace.on_presence = self._events.watch_presence
        # A pycrdt Doc inside an open document is a document of its own (Yjs's subdocuments),
        # opened with its parent; a y-webrtc room syncs one document, its subdocuments not.
        self._subdocs = SubdocLoader(self._open_subdoc, self._close)
        if doc is not None:
            self._workspace.open_document(Replica(doc, doc_id=DEFAULT_DOC_ID, store=self._store))
            self._track_subdocs(DEFAULT_DOC_ID, doc)
        if isinstance(self._connector, WebRTCConnector | YWebrtcConnector):
            self._connector.signaling.on_connection_changed = self._events.signaling_changed
        self._started = False

    def __repr__(self) -> str:
        return f"<Peer {self.id} room={self.room!r} peers={sorted(self.peers)}>"

    @property
    def id(self) -> str:
        """This peer's id, unique in the room (given by the room, not chosen)."""
        return self._connector.local_id

    @property
    def peers(self) -> frozenset[str]:
        """Remote peers with an open link."""
        return self._mesh.peers

    @property
    def documents(self) -> frozenset[str]:
        """The ids of the documents open here."""
        return self._workspace.documents.pinned

    @property
    def served(self) -> frozenset[str]:
        """The ids of documents loaded from the store for remote peers that asked for them,
        not open here: they are unloaded again once idle."""
        return self._workspace.served

    def doc(self, doc_id: str = DEFAULT_DOC_ID) -> pycrdt.Doc[Any]:
        """The open document ``doc_id`` (by default the document of ``Peer(doc, ...)``)."""
        return self._open_replica(doc_id).doc

    @property
    def awareness(self) -> pycrdt.Awareness:
        """This peer's presence in the document ``"default"`` (see :meth:`awareness_of`)."""
        return self.awareness_of(DEFAULT_DOC_ID)

    def awareness_of(self, doc_id: str) -> pycrdt.Awareness:
        """This peer's presence (cursor, name) in an open document, and what it knows of
        others': presence is per document, as editors show cursors per file."""
        self._open_replica(doc_id)
        return self._workspace.awareness(doc_id)

    async def open(
        self, doc_id: str, *, doc: pycrdt.Doc[Any] | None = None, timeout: float = 10.0
    ) -> pycrdt.Doc[Any]:
        """Open document ``doc_id`` (a new ``Doc``, or ``doc``) and return it once it is in
        sync with every linked peer that holds it (at once when none does, or before
        :meth:`start`). It is loaded from the store first, if there is one; opening an
        open document returns it."""
        check_doc_id(doc_id)
        if is_subdoc_id(doc_id):
            raise ConfigError(
                f"{doc_id!r} names a subdocument: it opens with the document that holds it"
            )
        if self._dialect == "y-webrtc" and doc_id != DEFAULT_DOC_ID:
            raise ConfigError(
                f"a y-webrtc room is one document ({DEFAULT_DOC_ID!r}), not {doc_id!r}"
            )
        replica = self._workspace.pin(doc_id)
        if replica is None:
            replica = Replica(
                pycrdt.Doc() if doc is None else doc, doc_id=doc_id, store=self._store
            )
            self._workspace.open_document(replica)
        elif doc is not None and doc is not replica.doc:
            raise ConfigError(f"document {doc_id!r} is open here already, with another Doc")
        self._track_subdocs(doc_id, replica.doc)
        if self._started:
            await self._mesh.wait_until(
                lambda: self._workspace.settled(doc_id),
                timeout=timeout,
                what=f"{doc_id!r} in sync",
                doc_id=doc_id,
            )
        return replica.doc

    async def close_document(self, doc_id: str) -> None:
        """Stop syncing an open document (its pending edits go out first); the ``Doc`` stays
        usable. With a store, remote peers may still sync it with us (from the store). Its
        subdocuments close with it."""
        self._open_replica(doc_id)
        if is_subdoc_id(doc_id):
            raise ConfigError(
                f"{doc_id!r} is a subdocument: it closes when it leaves the document that "
                "holds it, or when that document closes"
            )
        self._subdocs.untrack(doc_id)
        self._close(doc_id)

    @property
    def synced(self) -> bool:
        """Whether step 2 arrived from every linked peer."""
        return self._mesh.synced

    @property
    def signaling_url(self) -> str | None:
        """The signaling server this peer is connected to now (of those it was given); None
        while it has none, and on a simulated network."""
        if isinstance(self._connector, WebRTCConnector | YWebrtcConnector):
            client = self._connector.signaling
            return client.url if client.connected else None
        return None

    @property
    def bytes_sent(self) -> int:
        """Bytes this peer put on its links so far (every message, every link)."""
        return self._mesh.bytes_sent

    @property
    def bytes_received(self) -> int:
        """Bytes that arrived on this peer's links so far."""
        return self._mesh.bytes_received

    @property
    def congested(self) -> frozenset[str]:
        """Linked peers whose link is backed up: updates for them wait, merged into one."""
        return self._mesh.congested

    def link_stats(self) -> dict[str, LinkStats]:
        """What each open link is doing, by remote peer id: the candidate pair it took
        (``stats.path.relayed``: through a TURN server), heartbeat round trip, traffic."""
        return self._mesh.link_stats()

    @property
    def connection(self) -> ConnectionState:
        """For a status line: LINKED (a peer linked), CONNECTING (in the room, nobody linked
        yet), OFFLINE (nobody linked, no signaling server reachable)."""
        return self._events.connection

    def events(self, max_queued: int = DEFAULT_MAX_QUEUED) -> EventStream:
        """What a host reacts to, as ``async for event in peer.events()``: PeerLinked,
        PeerUnlinked, Synced, SignalingConnected, SignalingLost, CongestionChanged,
        PresenceChanged (``crdtsync.host_events``). Events queue from this call on (at most
        ``max_queued``, then the oldest go); the stream ends when the peer closes."""
        return self._events.stream(max_queued)

    async def start(self) -> None:
        """Join the room; links form in the background."""
        if self._started:
            raise LocalProtocolError(f"peer {self.id} already started")
        self._started = True
        await self._mesh.start()
        self._subdocs.drain()

    async def flush(self) -> None:
        """Return once every edit made so far is in the store (and on its way to peers)."""
        if self._store is None:
            raise ConfigError("flush() needs a store: Peer(..., store=PATH)")
        self._mesh.flush()

    def send_now(self) -> None:
        """Hand the edits made so far to the links at once, not at the end of this tick (nor
        when the batching window closes): a host with more work in the same tick, such as
        an editor's redraw of a keystroke, lets the keystroke leave first."""
        self._mesh.flush()

    async def aclose(self) -> None:
        """Send pending updates, say goodbye, leave the room; idempotent. The documents stay
        usable."""
        self._subdocs.close()
        await self._mesh.aclose()
        self._events.close()
        if self._store is not None:
            self._store.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def wait_for_peers(self, count: int, timeout: float = 10.0) -> None:
        """Wait until at least ``count`` remote peers are linked."""
        await self.wait_for(
            lambda: len(self.peers) >= count, timeout=timeout, what=f"{count} linked peers"
        )

    async def wait_synced(self, timeout: float = 10.0) -> None:
        """Wait until step 2 arrived from every linked peer (at once if none is linked)."""
        await self.wait_for(lambda: self.synced, timeout=timeout, what="sync")

    async def wait_for(self, predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Wait until ``predicate()`` holds, checked whenever the mesh changes (links, sync)
        and whenever a message arrives (so remote edits count).

        Raises SyncTimeoutError naming ``what`` after ``timeout`` seconds.
        """
        await self._mesh.wait_until(predicate, timeout=timeout, what=what)

    def _track_subdocs(self, doc_id: str, doc: pycrdt.Doc[Any]) -> None:
        if self._dialect != "y-webrtc":
            self._subdocs.track(doc_id, doc)

    def _open_subdoc(self, doc_id: str, doc: pycrdt.Doc[Any]) -> None:
        """Sync a subdocument with ``doc``, the instance its parent holds here."""
        if self._workspace.replica(doc_id) is not None:
            # Served from the store for a remote until now, with a Doc of its own: ours
            # takes over (it loads the same stored history).
            self._workspace.close_document(doc_id, still_served=True)
        self._workspace.open_document(Replica(doc, doc_id=doc_id, store=self._store))

    def _close(self, doc_id: str) -> None:
        stored = self._store is not None and self._store.holds(doc_id)
        self._workspace.close_document(doc_id, still_served=stored)
        self._events.unwatch_presence(doc_id)

    def _open_replica(self, doc_id: str) -> Replica:
        replica = self._workspace.replica(doc_id)
        if replica is None or not self._workspace.documents.is_pinned(doc_id):
            open_ids = ", ".join(repr(open_id) for open_id in sorted(self.documents)) or "none"
            raise ConfigError(f"document {doc_id!r} is not open here (open: {open_ids})")
        return replica
