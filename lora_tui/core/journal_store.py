"""The caption journal on disk: one SQLite file, ``.lora-tui/journal.db``.

Why SQLite: its commits are atomic and durable (an operation's intent is on disk before the first
caption is renamed), and a query reads what it needs, so listing the history costs the same for
10 operations or 10,000 however much text they hold. It ships with Python.

Tables (``ops`` small, everything else only read to undo, redo or recover):

- ``ops``: one row per operation (``edit``, ``undo``, ``redo``): label, time, state (``intent``
  until its last rename, then ``done``; ``aborted`` if it changed nothing), files written.
- ``changes``: per operation, each file's path id and the hashes of its content before and after
  (NULL: no file). Only files actually written stay listed once the operation is done.
- ``blobs``: content hash (64 bits of BLAKE2b) → where the text lives; each text is stored once,
  however many operations refer to it (one edit's "after" is the next one's "before").
- ``packs``: the texts an operation added, zlib-compressed together (captions of one dataset look
  alike, so a pack is a fraction of the text it holds).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sqlite3
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_tui.core.errors import JournalError

DB_NAME = "journal.db"
SCHEMA_VERSION = "1"
ROW_OVERHEAD = 48  # bytes a change row and its blob entry take, for the size estimate of trimming
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ops(seq INTEGER PRIMARY KEY, id TEXT NOT NULL, kind TEXT NOT NULL,
  target INTEGER, label TEXT NOT NULL, t REAL NOT NULL, state TEXT NOT NULL, files INTEGER NOT NULL,
  left_alone INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS paths(id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS changes(op INTEGER NOT NULL, path INTEGER NOT NULL, before INTEGER,
  after INTEGER, PRIMARY KEY(op, path)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS packs(id INTEGER PRIMARY KEY, raw INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blobs(h INTEGER PRIMARY KEY, pack INTEGER NOT NULL, off INTEGER NOT NULL,
  len INTEGER NOT NULL);
"""


def text_hash(data: bytes) -> int:
    """The 64-bit content key of a text (a signed integer: SQLite's native row key)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


@dataclass(frozen=True)
class OpRow:
    seq: int
    id: str
    kind: str
    target: int | None
    label: str
    t: float
    state: str
    files: int
    left_alone: int
    bytes: int


Row = tuple[str, int | None, int | None]  # (path, before hash, after hash)


class Store:
    """Access to ``journal.db``; a short-lived connection per call keeps threads independent."""

    def __init__(self, state_dir: Path) -> None:
        self.file = Path(state_dir) / DB_NAME

    @contextlib.contextmanager
    def connect(self, *, create: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode (transactions are explicit).

        Without ``create``, a journal that does not exist (or never got its tables: a crash while
        creating it) raises FileNotFoundError, which readers take as "no history yet".
        """
        if not create and not self.file.exists():
            raise FileNotFoundError(self.file)
        try:
            if create:
                self.file.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.file, timeout=10, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise self._error(exc) from None
        try:
            conn.execute("PRAGMA synchronous=FULL")
            row = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
            if row is None:
                if not create:
                    raise FileNotFoundError(self.file)
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # before the first table: freed pages go back
                conn.executescript(f"BEGIN;{_SCHEMA}INSERT INTO meta VALUES('version', '{SCHEMA_VERSION}');COMMIT;")
            else:
                version = conn.execute("SELECT v FROM meta WHERE k='version'").fetchone()
                if version is None or version[0] != SCHEMA_VERSION:
                    raise JournalError("the caption journal was written by another version of lora-tui",
                                       path=self.file, hint="upgrade lora-tui, or clear it: lora-tui captions "
                                       "PROJECT forget")
            yield conn
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            raise self._error(exc) from None
        finally:
            conn.close()

    def _error(self, exc: BaseException) -> JournalError:
        return JournalError(f"cannot use the caption journal: {exc}", path=self.file,
                            hint="fix its permissions, or clear it: lora-tui captions PROJECT forget")

    # -- reading --------------------------------------------------------------------------------
    def ops(self) -> list[OpRow]:
        """Every operation, oldest first (small rows: this is what history reads)."""
        try:
            with self.connect() as conn:
                rows = conn.execute("SELECT seq, id, kind, target, label, t, state, files, left_alone, bytes "
                                    "FROM ops ORDER BY seq").fetchall()
        except FileNotFoundError:
            return []
        return [OpRow(*row) for row in rows]

    def meta(self, key: str) -> str | None:
        try:
            with self.connect() as conn:
                row = conn.execute("SELECT v FROM meta WHERE k=?", (key,)).fetchone()
        except FileNotFoundError:
            return None
        return row[0] if row else None

    def rows(self, seq: int) -> list[Row]:
        """An operation's files: (path, before hash, after hash)."""
        with self.connect() as conn:
            return conn.execute("SELECT p.path, c.before, c.after FROM changes c JOIN paths p ON p.id = c.path "
                                "WHERE c.op=? ORDER BY p.path", (seq,)).fetchall()

    def texts(self, hashes: Iterable[int | None]) -> dict[int, bytes]:
        """The stored texts for ``hashes``; each pack is decompressed once."""
        wanted = sorted({h for h in hashes if h is not None})
        found: dict[int, bytes] = {}
        with self.connect() as conn:
            where: dict[int, list[tuple[int, int, int]]] = {}
            for chunk in _chunks(wanted, 500):
                marks = ",".join("?" * len(chunk))
                for h, pack, off, length in conn.execute(
                        f"SELECT h, pack, off, len FROM blobs WHERE h IN ({marks})", chunk):
                    where.setdefault(pack, []).append((h, off, length))
            for pack, entries in where.items():
                (data,) = conn.execute("SELECT data FROM packs WHERE id=?", (pack,)).fetchone()
                raw = zlib.decompress(data)
                for h, off, length in entries:
                    found[h] = raw[off:off + length]
        missing = [h for h in wanted if h not in found]
        if missing:
            raise JournalError(f"the caption journal lacks {len(missing)} stored texts", path=self.file,
                               hint="it was damaged; clear it: lora-tui captions PROJECT forget")
        return found

    def size(self) -> int:
        """Bytes in use (the file minus its free pages)."""
        try:
            with self.connect() as conn:
                pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute(
                    "PRAGMA freelist_count").fetchone()[0]
                return pages * conn.execute("PRAGMA page_size").fetchone()[0]
        except FileNotFoundError:
            return 0

    # -- writing (the caller holds the project's write lock) ------------------------------------
    def begin(self, op_id: str, kind: str, target: int | None, label: str, t: float,
              rows: Sequence[Row], texts: dict[int, bytes]) -> int:
        """Record an operation's intent (its files and any new texts) durably; returns its seq."""
        with self.connect(create=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            seq = self._insert(conn, op_id, kind, target, label, t, "intent", rows, texts)
            conn.execute("COMMIT")
        return seq

    def import_ops(self, edits: Sequence[tuple[Any, list[Row], dict[int, bytes]]], undone: Sequence[str]) -> None:
        """Write a migrated history in one transaction: each edit (``.id``, ``.label``, ``.t``) as
        done, then an undo for each id in ``undone`` (in the order they were undone)."""
        with self.connect(create=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            seqs = {}
            for entry, rows, texts in edits:
                seqs[entry.id] = (self._insert(conn, entry.id, "edit", None, entry.label, entry.t, "done", rows,
                                               texts), entry, rows)
            for edit_id in undone:
                seq, entry, rows = seqs[edit_id]
                self._insert(conn, edit_id, "undo", seq, entry.label, entry.t, "done",
                             [(p, a, b) for p, b, a in rows], {})
            conn.execute("COMMIT")

    def _insert(self, conn: sqlite3.Connection, op_id: str, kind: str, target: int | None, label: str, t: float,
                state: str, rows: Sequence[Row], texts: dict[int, bytes]) -> int:
        new = self._missing(conn, texts)
        pack_bytes = 0
        if new:
            raw = b"".join(texts[h] for h in new)
            data = zlib.compress(raw, 6)
            pack = conn.execute("INSERT INTO packs(raw, data) VALUES(?, ?)", (len(raw), data)).lastrowid
            offsets, off = [], 0
            for h in new:
                offsets.append((h, pack, off, len(texts[h])))
                off += len(texts[h])
            conn.executemany("INSERT INTO blobs(h, pack, off, len) VALUES(?, ?, ?, ?)", offsets)
            pack_bytes = len(data)
        seq = conn.execute("INSERT INTO ops(id, kind, target, label, t, state, files, bytes) "
                           "VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                           (op_id, kind, target, label, t, state, len(rows),
                            pack_bytes + ROW_OVERHEAD * len(rows))).lastrowid
        ids = self._path_ids(conn, [r[0] for r in rows])
        conn.executemany("INSERT INTO changes(op, path, before, after) VALUES(?, ?, ?, ?)",
                         [(seq, ids[path], before, after) for path, before, after in rows])
        return int(seq)

    @staticmethod
    def _missing(conn: sqlite3.Connection, texts: dict[int, bytes]) -> list[int]:
        have: set[int] = set()
        keys = list(texts)
        for chunk in _chunks(keys, 500):
            marks = ",".join("?" * len(chunk))
            have.update(h for (h,) in conn.execute(f"SELECT h FROM blobs WHERE h IN ({marks})", chunk))
        return [h for h in keys if h not in have]

    @staticmethod
    def _path_ids(conn: sqlite3.Connection, paths: Sequence[str]) -> dict[str, int]:
        conn.executemany("INSERT OR IGNORE INTO paths(path) VALUES(?)", [(p,) for p in paths])
        ids: dict[str, int] = {}
        for chunk in _chunks(list(paths), 500):  # one query per 500 paths, not one per path
            marks = ",".join("?" * len(chunk))
            ids.update((path, pid) for pid, path in conn.execute(
                f"SELECT id, path FROM paths WHERE path IN ({marks})", chunk))
        return ids

    def finish(self, seq: int, not_written: Iterable[str], *, aborted: bool = False) -> None:
        """Close an operation: only the files it wrote stay listed (none if ``aborted``)."""
        skipped = list(not_written)
        with self.connect(create=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            if aborted:
                conn.execute("DELETE FROM changes WHERE op=?", (seq,))
            elif skipped:
                conn.executemany("DELETE FROM changes WHERE op=? AND path=(SELECT id FROM paths WHERE path=?)",
                                 [(seq, p) for p in skipped])
            written = conn.execute("SELECT COUNT(*) FROM changes WHERE op=?", (seq,)).fetchone()[0]
            conn.execute("UPDATE ops SET state=?, files=?, left_alone=? WHERE seq=?",
                         ("aborted" if aborted else "done", written, len(skipped), seq))
            conn.execute("COMMIT")

    def merge(self, seqs: Sequence[int], label: str) -> None:
        """Fold done edits into the first of ``seqs`` (one transaction): per file, the first before
        and the last after; the other operations are deleted."""
        first, rest = seqs[0], list(seqs[1:])
        with self.connect(create=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            merged: dict[int, list[int | None]] = {}
            for seq in seqs:
                for path, before, after in conn.execute("SELECT path, before, after FROM changes WHERE op=?", (seq,)):
                    merged.setdefault(path, [before, after])[1] = after
            size = 0
            for chunk in _chunks(list(seqs), 500):
                marks = ",".join("?" * len(chunk))
                size += conn.execute(f"SELECT COALESCE(SUM(bytes), 0) FROM ops WHERE seq IN ({marks})",
                                     chunk).fetchone()[0]
                conn.execute(f"DELETE FROM changes WHERE op IN ({marks})", chunk)
            for chunk in _chunks(rest, 500):
                conn.execute(f"DELETE FROM ops WHERE seq IN ({','.join('?' * len(chunk))})", chunk)
            conn.executemany("INSERT INTO changes(op, path, before, after) VALUES(?, ?, ?, ?)",
                             [(first, path, b, a) for path, (b, a) in merged.items()])
            conn.execute("UPDATE ops SET label=?, files=?, bytes=? WHERE seq=?", (label, len(merged), size, first))
            conn.execute("COMMIT")

    def drop(self, seqs: Sequence[int]) -> None:
        """Forget operations, then every text and pack no remaining operation refers to."""
        with self.connect(create=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            for chunk in _chunks(list(seqs), 500):
                marks = ",".join("?" * len(chunk))
                conn.execute(f"DELETE FROM changes WHERE op IN ({marks})", chunk)
                conn.execute(f"DELETE FROM ops WHERE seq IN ({marks})", chunk)
            conn.execute("DELETE FROM blobs WHERE h NOT IN (SELECT before FROM changes WHERE before IS NOT NULL) "
                         "AND h NOT IN (SELECT after FROM changes WHERE after IS NOT NULL)")
            conn.execute("DELETE FROM paths WHERE id NOT IN (SELECT path FROM changes)")
            self._repack(conn)
            conn.execute("COMMIT")
            conn.execute("PRAGMA incremental_vacuum")

    @staticmethod
    def _repack(conn: sqlite3.Connection) -> None:
        """Drop packs nothing refers to; rewrite those mostly dead, so trimming frees space."""
        live = dict(conn.execute("SELECT pack, SUM(len) FROM blobs GROUP BY pack").fetchall())
        for pack, raw_len in conn.execute("SELECT id, raw FROM packs").fetchall():
            if pack not in live:
                conn.execute("DELETE FROM packs WHERE id=?", (pack,))
            elif live[pack] * 2 < raw_len:
                (data,) = conn.execute("SELECT data FROM packs WHERE id=?", (pack,)).fetchone()
                raw = zlib.decompress(data)
                entries = conn.execute("SELECT h, off, len FROM blobs WHERE pack=? ORDER BY off", (pack,)).fetchall()
                parts, moved, off = [], [], 0
                for h, old, length in entries:
                    parts.append(raw[old:old + length])
                    moved.append((off, h))
                    off += length
                kept = b"".join(parts)
                conn.execute("UPDATE packs SET raw=?, data=? WHERE id=?", (len(kept), zlib.compress(kept, 6), pack))
                conn.executemany("UPDATE blobs SET off=? WHERE h=?", moved)

    def clear(self) -> None:
        """Delete the journal file (and SQLite's own rollback journal, if a crash left one)."""
        for path in (self.file, self.file.with_name(DB_NAME + "-journal")):
            try:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise JournalError(f"cannot remove the journal: {exc.strerror or exc}", path=path) from None


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]

