"""Content-addressed cache and atomic writes.

Every expensive artifact (converted weights, embeddings, adapters, generations)
is keyed by a hash of what produced it and written via temp file + rename, so a
killed run never leaves a half-written artifact that a later run would trust.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import platformdirs


def cache_dir() -> Path:
    """Root of the user cache; ADVISOR_CACHE overrides (tests use a temp dir)."""
    root = os.environ.get("ADVISOR_CACHE") or platformdirs.user_cache_dir("advisor")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def hash_bytes(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def hash_json(obj: Any) -> str:
    return hash_bytes(json.dumps(obj, sort_keys=True, default=str))


def hash_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; outputs are ordinary files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temp dir beside `final`; on success it is renamed into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a cache entry is an ordinary folder
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class KeyValueStore:
    """One SQLite table of content-hash keys to values (generations, embeddings, ...).

    Each call opens its own connection, so threads and processes may share a store;
    a value is written in one statement, so a killed run never leaves half of one.
    """

    def __init__(self, path: Path, table: str):
        if not re.fullmatch(r"[a-z_]+", table):
            raise ValueError(f"table name {table!r}: lowercase letters and _ only")
        self.path, self.table = path, table
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, value NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self._connect() as db:
            for i in range(0, len(keys), 500):  # SQLite limits the parameters of one statement
                batch = keys[i : i + 500]
                q = f"SELECT key, value FROM {self.table} WHERE key IN ({','.join('?' * len(batch))})"
                found.update(db.execute(q, batch).fetchall())
        return found

    def get(self, key: str) -> Any | None:
        return self.get_many([key]).get(key)

    def put_many(self, items: list[tuple[str, Any]]) -> None:
        with self._connect() as db:
            db.executemany(f"INSERT OR REPLACE INTO {self.table} VALUES (?, ?)", items)

    def put(self, key: str, value: Any) -> None:
        self.put_many([(key, value)])
