"""The signaling server's operations endpoints, on its own port: ``/healthz`` and ``/metrics``.

websockets' ``process_request`` hook answers a plain HTTP GET for these two paths before any
WebSocket handshake; every other request goes on to the handshake, except while the server
drains: then it gets a 503, and the client moves to another server. Each server has its own
``CollectorRegistry``, so several servers in one process never collide. What the cores count
(``tally.Tally``), the connections and the rooms are read only when ``/metrics`` is scraped.
"""

from __future__ import annotations

import collections
import http
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Literal, Protocol, get_args
from urllib.parse import urlsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Enum,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from crdtsync.errors import ConfigError
from crdtsync.signaling.tally import Tally

__all__ = ["HEALTH_PATH", "METRICS_PATH", "Counted", "RedisState", "ServerMetrics", "Status"]

HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"

# "starting" until the server is ready to serve, "draining" once it sends its clients away.
Status = Literal["starting", "ok", "draining"]
# "disabled" without a backplane; "down" while the backplane cannot reach Redis (the server
# still serves its own peers, so /healthz stays 200 and names the state).
RedisState = Literal["disabled", "connecting", "connected", "down"]

# Relay latency is a queue and a write on one event loop: tens of microseconds when idle,
# milliseconds under load, seconds only for a client that stopped reading (send_timeout).
_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)


class Counted(Protocol):
    """What the metrics read of a signaling core (``Router``, ``TopicRouter``)."""

    tally: Tally

    @property
    def room_count(self) -> int: ...


class ServerMetrics:
    """One server's health and metrics; the adapter and the backplane report to it.

    The backplane calls ``redis_errors.inc()`` on each failed Redis call and sets
    ``redis_state``; the adapter observes ``relay_latency``, counts its own ``refusals``
    (connections refused at accept, upgrades refused while draining) and sets ``status``.
    """

    def __init__(self, connections: Callable[[], int], cores: Mapping[str, Counted]) -> None:
        """``connections`` counts open WebSocket connections; ``cores`` by protocol name."""
        self.registry = CollectorRegistry()
        self._connections = connections
        self._cores = cores
        self.refusals: collections.Counter[str] = collections.Counter()
        self.registry.register(_CoreCollector(connections, cores, self.refusals))
        self.relay_latency = Histogram(
            "crdtsync_signaling_relay_latency_seconds",
            "From a frame's arrival to the writer's handoff to the network of what it made "
            "for other connections (a relayed signal, a fanned-out publish, a join notice)",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "crdtsync_signaling_redis_errors",
            "Redis calls of the backplane that failed",
            registry=self.registry,
        )
        self._redis_metric = Enum(
            "crdtsync_signaling_redis",
            "The backplane's link to Redis",
            states=list(get_args(RedisState)),
            registry=self.registry,
        )
        self._status_metric = Enum(
            "crdtsync_signaling_status",
            "Whether the server takes new connections (ok) or not (starting, draining)",
            states=list(get_args(Status)),
            registry=self.registry,
        )
        self._status: Status = "starting"
        self._redis_state: RedisState = "disabled"

    @property
    def status(self) -> Status:
        return self._status

    @status.setter
    def status(self, status: Status) -> None:
        if status not in get_args(Status):
            raise ConfigError(f"status must be one of {get_args(Status)}, not {status!r}")
        self._status = status
        self._status_metric.state(status)

    @property
    def redis_state(self) -> RedisState:
        return self._redis_state

    @redis_state.setter
    def redis_state(self, state: RedisState) -> None:
        if state not in get_args(RedisState):
            raise ConfigError(f"redis_state must be one of {get_args(RedisState)}, not {state!r}")
        self._redis_state = state
        self._redis_metric.state(state)

    @property
    def connections(self) -> int:
        return self._connections()

    @property
    def rooms(self) -> int:
        """Rooms with a member here, native and y-webrtc (never shared) together."""
        return sum(core.room_count for core in self._cores.values())

    def health(self) -> tuple[int, dict[str, object]]:
        """The ``/healthz`` answer: 200 when ready (whatever Redis does), else 503."""
        body: dict[str, object] = {
            "status": self._status,
            "connections": self.connections,
            "rooms": self.rooms,
            "redis": self._redis_state,
        }
        return (200 if self._status == "ok" else 503), body

    def answer(self, connection: ServerConnection, request: Request) -> Response | None:
        """websockets' ``process_request``: the two endpoints, a 503 to upgrades while
        draining, else None (go on with the WebSocket handshake)."""
        path = urlsplit(request.path).path
        if path == HEALTH_PATH:
            code, body = self.health()
            return _respond(connection, code, json.dumps(body) + "\n", "application/json")
        if path == METRICS_PATH:
            # Only ASCII: metric names, numbers, and label values we chose.
            text = generate_latest(self.registry).decode()
            return _respond(connection, 200, text, CONTENT_TYPE_LATEST)
        if self._status == "draining":
            self.refusals["draining"] += 1
            return connection.respond(503, "draining: connect to another server\n")
        return None


def _respond(connection: ServerConnection, code: int, text: str, content_type: str) -> Response:
    response = connection.respond(http.HTTPStatus(code), text)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = content_type
    response.headers["Cache-Control"] = "no-store"
    return response


class _CoreCollector:
    """The figures read at scrape time: connections, rooms, and the cores' tallies."""

    def __init__(
        self,
        connections: Callable[[], int],
        cores: Mapping[str, Counted],
        refusals: collections.Counter[str],
    ) -> None:
        self._connections = connections
        self._cores = cores
        self._refusals = refusals  # the adapter's own

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "crdtsync_signaling_connections",
            "Open WebSocket connections, both protocols",
            value=self._connections(),
        )
        rooms = GaugeMetricFamily(
            "crdtsync_signaling_rooms", "Rooms with a member here", labels=["protocol"]
        )
        joins = CounterMetricFamily(
            "crdtsync_signaling_joins",
            "Rooms joined (y-webrtc: topics subscribed)",
            labels=["protocol"],
        )
        relayed = CounterMetricFamily(
            "crdtsync_signaling_relayed_messages",
            "Frames relayed to another connection, by kind (native: signal; y-webrtc: "
            "announce, signal, sealed, other)",
            labels=["protocol", "kind"],
        )
        refusals = collections.Counter(self._refusals)
        for protocol, core in self._cores.items():
            rooms.add_metric([protocol], core.room_count)
            joins.add_metric([protocol], core.tally.joins)
            for kind, count in sorted(core.tally.relayed.items()):
                relayed.add_metric([protocol, kind], count)
            refusals.update(core.tally.refusals)
        refused = CounterMetricFamily(
            "crdtsync_signaling_refusals",
            "Requests and connections refused, by the code the client was given",
            labels=["code"],
        )
        for code, count in sorted(refusals.items()):
            refused.add_metric([code], count)
        yield from (rooms, joins, relayed, refused)
