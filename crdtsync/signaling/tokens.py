"""Join tokens: an HMAC over room name and expiry, so only invited peers can join a room.

A token is ``"<expiry>.<hex HMAC-SHA256(secret, room + "\\n" + expiry)>"``, with the expiry
in Unix seconds. The server needs only the secret; whoever hands out invitations (an app
server) makes tokens with the same secret.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["make_join_token", "verify_join_token"]


def _digest(secret: bytes, room: str, expires: int) -> str:
    return hmac.new(secret, f"{room}\n{expires}".encode(), hashlib.sha256).hexdigest()


def make_join_token(secret: bytes, room: str, expires_at: float) -> str:
    """A token that lets its holder join ``room`` until ``expires_at`` (Unix seconds)."""
    expires = int(expires_at)
    return f"{expires}.{_digest(secret, room, expires)}"


def verify_join_token(secret: bytes, room: str, token: str, now: float) -> str | None:
    """None when ``token`` admits to ``room`` at ``now``; else why not ("expired", "forged")."""
    expires_text, _, digest = token.partition(".")
    if not expires_text.isdigit() or not digest:
        return "malformed"
    expires = int(expires_text)
    if not hmac.compare_digest(digest, _digest(secret, room, expires)):
        return "forged"
    if now >= expires:
        return "expired"
    return None
