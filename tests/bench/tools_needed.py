"""What the benchmarks that run Node need, as a test sees it: skip, or fail under CI=true."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from crdtsync.errors import ConfigError


def require(check: Callable[[], object]) -> None:
    """Skip unless ``check()`` passes (its ConfigError is the one-line reason); under
    ``CI=true`` fail instead, so CI cannot pass by skipping (as tests/interop's ``require``)."""
    try:
        check()
    except ConfigError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc} (CI=true: failing, not skipping)", pytrace=False)
        pytest.skip(str(exc))
