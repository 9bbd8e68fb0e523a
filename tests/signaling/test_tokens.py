"""Join tokens: bearer and peer-bound, and hostile strings refused, never raised."""

from __future__ import annotations

import pytest

from crdtsync.errors import ConfigError
from crdtsync.signaling.tokens import make_join_token, verify_join_token

SECRET = b"server secret"
DIGEST = "0" * 64


def test_bearer_tokens_keep_their_old_form_and_stay_valid() -> None:
    token = make_join_token(SECRET, "notes", 2000)
    expires, digest = token.split(".")
    assert expires == "2000"
    assert len(digest) == 64
    assert verify_join_token(SECRET, "notes", token, 1000.0) is None
    assert verify_join_token(SECRET, "notes", token, 1000.0, peer_id="anyone") is None
    assert verify_join_token(SECRET, "notes", token, 2000.0) == "expired"
    assert verify_join_token(SECRET, "todo", token, 1000.0) == "forged"


def test_bound_tokens_admit_only_their_peer() -> None:
    token = make_join_token(SECRET, "notes", 2000, peer_id="alice")
    assert verify_join_token(SECRET, "notes", token, 1000.0, peer_id="alice") is None
    assert verify_join_token(SECRET, "notes", token, 1000.0, peer_id="mallory") == (
        "for another peer"
    )
    assert verify_join_token(SECRET, "notes", token, 1000.0) == "for another peer"
    # Rewriting the bound id, or stripping it to make a bearer token, breaks the digest.
    expires, _, digest = token.split(".")
    assert verify_join_token(SECRET, "notes", f"{expires}.mallory.{digest}", 1000.0, "mallory") == (
        "forged"
    )
    assert verify_join_token(SECRET, "notes", f"{expires}.{digest}", 1000.0) == "forged"
    with pytest.raises(ConfigError):
        make_join_token(SECRET, "notes", 2000, peer_id="a.b")


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "..",
        "2000",
        f"²⁰⁰⁰.{DIGEST}",  # superscripts: isdigit() is True, int() raises
        f"٢٠٠٠.{DIGEST}",  # Arabic-Indic digits: int() takes them; not ours
        "2000." + "é" * 64,  # not ASCII: compare_digest raises TypeError
        "2000." + "\x00" * 64,
        "2000." + "G" * 64,
        "2000." + "0" * 63,
        "9" * 17 + "." + DIGEST,
        f"2000.é.{DIGEST}",
        f"2000..{DIGEST}",
        f"2000.a.b.{DIGEST}",
        "2000." + "a" * 500,
    ],
)
def test_hostile_tokens_are_malformed_not_raised(token: str) -> None:
    """M5: what used to crash the router's handler (1011 and a traceback)."""
    assert verify_join_token(SECRET, "notes", token, 1000.0, peer_id="alice") == "malformed"
