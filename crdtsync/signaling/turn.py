"""Ephemeral TURN credentials: what the signaling server hands each peer once it has proved
its identity, so that no long-lived TURN password ships in clients.

This is coturn's ``use-auth-secret`` scheme (the "TURN REST API" draft,
draft-uberti-behave-turn-rest-00, section 2.2): the username is ``"<expiry>:<peer id>"`` with
the expiry in Unix seconds, and the password is base64(HMAC-SHA1(secret, username)). The
TURN server, configured with the same ``static-auth-secret``, recomputes the password and
refuses a username whose expiry has passed. Pure code: the caller gives the clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from crdtsync.errors import ConfigError
from crdtsync.protocol.signaling import MAX_TURN_URLS, TurnCredentials

__all__ = ["DEFAULT_TURN_TTL", "TurnSettings", "expires_at", "turn_password"]

# The REST API draft's example (section 2.2) and coturn's documentation: a day. Credentials
# are checked when an allocation is made and refreshed, so a link that outlives them loses
# its relay; a peer gets fresh ones each time it logs in to the signaling server again.
DEFAULT_TURN_TTL = 86400.0


def turn_password(secret: str, username: str) -> str:
    """coturn's ``use-auth-secret`` password for ``username``: base64(HMAC-SHA1)."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def expires_at(username: str) -> float | None:
    """When credentials with this username expire (Unix seconds); None if it is not one of
    this scheme's (``"<expiry>:<peer id>"``)."""
    expiry, colon, _ = username.partition(":")
    return float(expiry) if colon and expiry.isdigit() and len(expiry) <= 16 else None


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """The TURN servers a signaling server hands out, and the secret they share with it:
    ``TurnSettings(["turn:turn.example.com:3478?transport=udp"], secret, ttl=3600)``."""

    urls: Sequence[str]
    secret: str
    ttl: float = DEFAULT_TURN_TTL  # seconds the credentials stay valid

    def __post_init__(self) -> None:
        urls = (self.urls,) if isinstance(self.urls, str) else tuple(self.urls)
        object.__setattr__(self, "urls", urls)
        if not 0 < len(urls) <= MAX_TURN_URLS:
            raise ConfigError(f"give 1 to {MAX_TURN_URLS} TURN URLs (got {len(urls)})")
        for url in urls:
            if not url.startswith(("turn:", "turns:")):
                raise ConfigError(f"TURN URL {url!r} must start with turn: or turns:")
        if not self.secret:
            raise ConfigError("the TURN secret must not be empty")
        if not self.ttl > 0:
            raise ConfigError(f"the TURN credentials' ttl must be positive (got {self.ttl})")

    def credentials(self, peer_id: str, now: float) -> TurnCredentials:
        """Credentials for ``peer_id``, valid from ``now`` (Unix seconds) for ``ttl``."""
        username = f"{int(now + self.ttl)}:{peer_id}"
        return TurnCredentials(tuple(self.urls), username, turn_password(self.secret, username))
