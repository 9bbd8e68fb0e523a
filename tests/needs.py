"""What a test needs from the machine: skip without it, or fail under ``CI=true``.

Importable by name from every test directory (``tests/`` is on ``sys.path``), so there is one
rule for all: CI cannot go green by skipping.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

from crdtsync.errors import ConfigError

__all__ = ["require", "require_found", "require_program"]


def require(condition: object, reason: str) -> None:
    """Skip the test unless ``condition`` holds; under ``CI=true``, fail it instead."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: failing, not skipping)", pytrace=False)
    pytest.skip(reason)


def require_program(name: str, package: str) -> str:
    """The path of program ``name`` (from Debian package ``package``), or skip/fail."""
    path = shutil.which(name)
    require(path, f"{name} is not installed: apt-get install -y {package}")
    assert path is not None
    return path


def require_found(find: Callable[[], object]) -> None:
    """Skip unless ``find()`` runs without ConfigError (whose message is the reason); for the
    package's own finders (node_modules, y-webrtc's server)."""
    try:
        find()
    except ConfigError as exc:
        require(False, str(exc))
