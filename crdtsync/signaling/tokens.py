"""Join tokens: an HMAC over room name and expiry, so only invited peers can join a room.

A bearer token is ``"<expiry>.<hex HMAC-SHA256(secret, room + "\\n" + expiry)>"``, with the
expiry in Unix seconds: whoever holds it may join, as often as they like, under any identity.
A token bound to a peer is ``"<expiry>.<peer id>.<hex HMAC over [room, expiry, peer id]>"``:
only the connection proven to hold that peer's key may use it (the native protocol proves
ids; y-webrtc cannot, so it refuses bound tokens). The server needs only the secret; whoever
hands out invitations (an app server) makes tokens with the same secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from crdtsync.errors import ConfigError

__all__ = ["make_join_token", "verify_join_token"]

# Unix seconds need 11 digits until the year 5138; more is garbage, and bounds int().
_MAX_EXPIRY_DIGITS = 16
_HEX = frozenset("0123456789abcdef")
_MAX_PEER_ID = 128  # the protocol's longest id


def _digest(secret: bytes, room: str, expires: int, peer_id: str | None) -> str:
    # Bearer: as tokens were before binding existed, so they stay valid. Bound: a JSON list,
    # which ends with "]" where a bearer message ends with a digit: the two never collide.
    message = f"{room}\n{expires}" if peer_id is None else json.dumps([room, expires, peer_id])
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def make_join_token(secret: bytes, room: str, expires_at: float, peer_id: str | None = None) -> str:
    """A token that lets its holder join ``room`` until ``expires_at`` (Unix seconds); with
    ``peer_id``, only that peer (the one holding its key), so a leaked token admits nobody
    else and cannot be spent on throwaway identities."""
    expires = int(expires_at)
    if peer_id is None:
        return f"{expires}.{_digest(secret, room, expires, None)}"
    if not 0 < len(peer_id) <= _MAX_PEER_ID or "." in peer_id or not peer_id.isascii():
        raise ConfigError(
            f"a peer id of 1 to {_MAX_PEER_ID} ASCII characters, no dots: {peer_id[:100]!r}"
        )
    return f"{expires}.{peer_id}.{_digest(secret, room, expires, peer_id)}"


def verify_join_token(
    secret: bytes, room: str, token: str, now: float, peer_id: str | None = None
) -> str | None:
    """None when ``token`` admits ``peer_id`` to ``room`` at ``now``; else why not: one of
    "malformed", "forged", "for another peer", "expired". Never raises on any string."""
    parts = token.split(".")
    if len(parts) == 2:
        (expires_text, digest), bound = parts, None
    elif len(parts) == 3:
        expires_text, bound, digest = parts
        if not bound or not bound.isascii():
            return "malformed"
    else:
        return "malformed"
    # isdigit() alone admits superscripts and other scripts' digits, which int() refuses.
    if not (
        0 < len(expires_text) <= _MAX_EXPIRY_DIGITS
        and expires_text.isascii()
        and expires_text.isdigit()
    ):
        return "malformed"
    # compare_digest raises on non-ASCII text: check the digest is 64 hex digits first.
    if len(digest) != 64 or not _HEX.issuperset(digest):
        return "malformed"
    expires = int(expires_text)
    if not hmac.compare_digest(digest, _digest(secret, room, expires, bound)):
        return "forged"
    if bound is not None and bound != peer_id:
        return "for another peer"
    if now >= expires:
        return "expired"
    return None
