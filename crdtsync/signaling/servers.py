"""Which signaling server a client dials next: the URLs it was given, in turn, round after round.

Both clients (native and y-webrtc) dial through this: after each try they say how it ended,
and get the next URL and how long to wait first. An unreachable server, or one that closed,
is followed by the next one at once; only after a whole round of failures do they back off
(doubling, jittered), and a draining server's close 1001 ("going away") costs no backoff at
all. A session counts as working once it lasted ``STABLE_SESSION``: servers that drop their
clients right after login are failing ones, and get backed off from too. Each URL's origin
is kept apart: a login proof names the server it is for. The clock is the caller's.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from crdtsync.errors import ConfigError
from crdtsync.signaling.identity import normalise_origin

__all__ = [
    "CONNECTION_LOST",
    "GOING_AWAY",
    "MAX_MESSAGE_SIZE",
    "STABLE_SESSION",
    "ServerList",
    "dial",
    "retry_delay",
]

logger = logging.getLogger("crdtsync.signaling")

MAX_MESSAGE_SIZE = 65536  # the server's default limit
# What ends a connection to a signaling server without ending the client: it dials again.
CONNECTION_LOST = (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, InvalidURI)
GOING_AWAY = 1001  # RFC 6455 7.4.1: the server is going down (ours says so when it drains)
# Seconds a session must last for the failures before it to be forgiven: longer than the
# longest backoff (5 s), so a server that accepts and drops at once cannot make us spin.
STABLE_SESSION = 10.0


def dial(url: str, open_timeout: float, tls: dict[str, Any]) -> connect:
    """A websockets connection to a signaling server, as every client of ours opens it: no
    compression (it costs ~35% on small frames), no websockets pings (we ping ourselves)."""
    return connect(
        url,
        compression=None,
        open_timeout=open_timeout,
        ping_interval=None,
        max_size=MAX_MESSAGE_SIZE,
        **tls,
    )


def retry_delay(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after ``failures`` failed rounds in a row: doubling from ``base`` up
    to ``cap``, jittered down to half so clients of a restarted server do not come at once."""
    return min(cap, base * 2.0 ** (failures - 1)) * (0.5 + rng.random() / 2)


def _endpoint(url: str) -> str:
    """Where ``url`` leads (origin and path): two URLs alike here are one server twice."""
    return normalise_origin(url) + (urlsplit(url.strip()).path or "/")


class ServerList:
    """The signaling servers one client may use, in order, and which one it is on."""

    def __init__(
        self,
        servers: str | Sequence[str],
        *,
        tls: bool = False,
        reconnect_base: float,
        reconnect_cap: float,
        rng: random.Random,
    ) -> None:
        urls = (servers,) if isinstance(servers, str) else tuple(servers)
        if not urls:
            raise ConfigError("no signaling server: give a URL or a non-empty list of URLs")
        seen: dict[str, str] = {}
        for url in urls:
            if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
                raise ConfigError(f"signaling URL {url!r} must start with ws:// or wss://")
            if tls and not url.startswith("wss://"):
                raise ConfigError(f"an SSL context needs a wss:// signaling URL, not {url!r}")
            endpoint = _endpoint(url)
            if endpoint in seen:
                raise ConfigError(
                    f"signaling URL {url!r} is given twice (as {seen[endpoint]!r} before)"
                )
            seen[endpoint] = url
        if not 0 < reconnect_base <= reconnect_cap:
            raise ConfigError(
                f"need 0 < reconnect_base <= reconnect_cap (got {reconnect_base}, {reconnect_cap})"
            )
        self.urls = urls
        self.origins = tuple(normalise_origin(url) for url in urls)
        self.reconnect_base = reconnect_base
        self.reconnect_cap = reconnect_cap
        self._rng = rng
        self._index = 0
        self._failures = 0  # tries in a row that failed, since the last working session
        self._since: float | None = None  # when the current session began
        self._rushed = False  # a 1001 was followed at once since the last working session

    @property
    def current(self) -> str:
        """The URL to dial now (or the one connected)."""
        return self.urls[self._index]

    @property
    def origin(self) -> str:
        """The current server's origin: what a login proof for it names."""
        return self.origins[self._index]

    def connected(self, now: float) -> None:
        """A session with the current server began at ``now`` (logged in, subscribed)."""
        self._since = now

    def ended(self, name: str, error: BaseException, now: float) -> float:
        """The try on the current server ended with ``error`` at ``now``: moves on to the
        next server and returns the seconds to wait before dialing it.

        ``name`` says whose client it is, in the log line that says where it goes and why.
        """
        left, why, since = self.current, _why(error), self._since
        self._since = None
        if since is not None and now - since >= STABLE_SESSION:
            self._failures, self._rushed = 0, False  # it worked: a fresh start
        self._index = (self._index + 1) % len(self.urls)
        delay = 0.0
        going_away = isinstance(error, ConnectionClosed) and _close_code(error) == GOING_AWAY
        if going_away and not self._rushed:
            # A draining server sends its clients on at once: no failure of anyone's. Once
            # per working session: a server that says so to every login is a failing one.
            self._rushed = True
        else:
            self._failures += 1
            # A whole round failed (with one URL: every try): back off; else the next at once.
            rounds, within = divmod(self._failures, len(self.urls))
            if not within:
                delay = retry_delay(rounds, self.reconnect_base, self.reconnect_cap, self._rng)
        when = "at once" if delay == 0 else f"in {delay:.2f} s"
        lost = "could not reach" if since is None else "lost"
        logger.info("! %s %s %s (%s); dialing %s %s", name, lost, left, why, self.current, when)
        return delay


def _close_code(error: ConnectionClosed) -> int | None:
    return None if error.rcvd is None else error.rcvd.code


def _why(error: BaseException) -> str:
    """A short reason for the log: the close code and reason the server gave, or the error."""
    if isinstance(error, ConnectionClosed):
        if error.rcvd is None:
            return "connection dropped"
        reason = f": {error.rcvd.reason[:100]}" if error.rcvd.reason else ""
        going = " (going away)" if error.rcvd.code == GOING_AWAY else ""
        return f"closed {error.rcvd.code}{going}{reason}"
    return f"{type(error).__name__}: {str(error)[:100]}" if str(error) else type(error).__name__
