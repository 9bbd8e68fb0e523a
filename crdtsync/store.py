"""The durable local store: an append log of Yjs updates per document, in one SQLite file.

A peer loads its documents from here before it connects, so one that restarts offline still
has its work, and the mesh commits every update here before it sends or relays it (the
write-ahead rule). The log is squashed into one state update once it passes a row or byte
threshold; the old rows go in the same transaction that writes the squashed one, so a
crash at any point leaves either the old log or the new one. SQLite runs in WAL mode with
``synchronous=NORMAL``: a commit survives the process being killed (a power cut may lose
the last commits; ``durable=True`` syncs every commit to disk and survives that too).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from crdtsync.errors import ConfigError, StoreError

__all__ = ["FORMAT", "Store", "StoreSettings"]

FORMAT = "crdtsync-store/1"  # in the meta table: what a foreign or newer file lacks


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """When the log of one document is squashed; each default keeps loading fast."""

    # Replaying 1,000 small updates into a Doc takes ~10 ms; a squashed state loads in one go.
    compact_after_rows: int = 1000
    compact_after_bytes: int = 4 << 20
    durable: bool = False  # fsync every commit (power-cut safe), at ~10x the cost per commit

    def __post_init__(self) -> None:
        if self.compact_after_rows < 2 or self.compact_after_bytes < 1:
            raise ConfigError(
                "need compact_after_rows >= 2 and compact_after_bytes >= 1 "
                f"(got {self.compact_after_rows}, {self.compact_after_bytes})"
            )


class Store:
    """One SQLite file holding the update logs of a peer's documents."""

    def __init__(self, path: str | os.PathLike[str], settings: StoreSettings | None = None) -> None:
        self.path = Path(path)
        self.settings = settings or StoreSettings()
        # Called between the steps of a compaction; tests use it to kill the process there.
        self.compaction_step: Callable[[str], None] | None = None
        self._rows: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        try:
            self._prepare()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self.path} is not a crdtsync store (or is corrupt): {exc}") from exc
        except StoreError:
            self._db.close()
            raise

    def _prepare(self) -> None:
        db = self._db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.settings.durable else 'NORMAL'}")
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            with self._transaction():
                db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                db.execute(
                    "CREATE TABLE updates (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                    " doc_id TEXT NOT NULL, data BLOB NOT NULL)"
                )
                db.execute("CREATE INDEX updates_by_doc ON updates (doc_id, id)")
                db.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
            return
        found = None
        if "meta" in tables:
            row = db.execute("SELECT value FROM meta WHERE key='format'").fetchone()
            found = row[0] if row else None
        if found != FORMAT or "updates" not in tables:
            raise StoreError(
                f"{self.path} is not a crdtsync store: format {found!r}, expected {FORMAT!r}"
            )
        for doc_id, rows, size in db.execute(
            "SELECT doc_id, COUNT(*), SUM(LENGTH(data)) FROM updates GROUP BY doc_id"
        ):
            self._rows[doc_id], self._bytes[doc_id] = rows, size

    def load(self, doc_id: str) -> list[bytes]:
        """Every update logged for ``doc_id``, oldest first."""
        try:
            rows = self._db.execute(
                "SELECT data FROM updates WHERE doc_id=? ORDER BY id", (doc_id,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read store {self.path}: {exc}") from exc
        return [bytes(row[0]) for row in rows]

    def append(self, doc_id: str, updates: Iterable[bytes]) -> None:
        """Commit ``updates`` to the log of ``doc_id``; durable when this returns."""
        batch = [(doc_id, update) for update in updates]
        if not batch:
            return
        try:
            with self._transaction():
                self._db.executemany("INSERT INTO updates (doc_id, data) VALUES (?, ?)", batch)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write store {self.path}: {exc}") from exc
        self._rows[doc_id] = self._rows.get(doc_id, 0) + len(batch)
        self._bytes[doc_id] = self._bytes.get(doc_id, 0) + sum(len(data) for _, data in batch)

    def holds(self, doc_id: str) -> bool:
        """Whether ``doc_id`` has a log here."""
        return doc_id in self._rows

    def wants_compaction(self, doc_id: str) -> bool:
        return (
            self._rows.get(doc_id, 0) >= self.settings.compact_after_rows
            or self._bytes.get(doc_id, 0) >= self.settings.compact_after_bytes
        )

    def compact(self, doc_id: str, state: bytes) -> None:
        """Replace the log of ``doc_id`` by ``state``, which must hold everything logged."""
        step = self.compaction_step or (lambda _name: None)
        try:
            with self._transaction():
                step("begun")
                (last,) = self._db.execute(
                    "SELECT COALESCE(MAX(id), 0) FROM updates WHERE doc_id=?", (doc_id,)
                ).fetchone()
                self._db.execute(
                    "INSERT INTO updates (doc_id, data) VALUES (?, ?)", (doc_id, state)
                )
                step("squashed")
                self._db.execute("DELETE FROM updates WHERE doc_id=? AND id<=?", (doc_id, last))
                step("pruned")
            step("committed")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot compact store {self.path}: {exc}") from exc
        self._rows[doc_id], self._bytes[doc_id] = 1, len(state)

    def close(self) -> None:
        """Close the file; idempotent."""
        self._db.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (the connection autocommits)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
