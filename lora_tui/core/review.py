"""Review marks per image (reviewed, flagged, excluded, needs-review), kept in ``.lora-tui/review.json``.

Marks are keyed by the image path relative to the project folder (absolute for folders outside
it), so they survive moving the project with its images. Every change is written atomically, on
top of the file as it is now, holding ``.lora-tui/review.lock`` from reading the file to replacing
it: an auto-captioner in another process adds "needs-review" marks while the app marks images
reviewed, and neither may drop the other's marks (without the lock, two processes setting 200
marks each kept ~100 of each).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from lora_tui.core.fsio import WriteError, atomic_write_text
from lora_tui.core.writelock import WriteLock

REVIEW_FILE = "review.json"
REVIEW_LOCK = "review.lock"
NEEDS_REVIEW = "needs-review"  # set on captions a model wrote; marking the image reviewed clears it
MARKS = ("reviewed", "flagged", "excluded", NEEDS_REVIEW)


class ReviewMarks:
    """The set of marks of a project; ``toggle``/``set`` persist immediately."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.file = self.root / ".lora-tui" / REVIEW_FILE
        self._prefix = os.path.join(str(self.root), "")
        self._marks: dict[str, set[str]] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._damaged = False  # the file on disk could not be read: keep it before replacing it
        self.lock = WriteLock(self.file.parent, name=REVIEW_LOCK, subject="review marks")
        self.reload()

    def reload(self, *, force: bool = False) -> bool:
        """Re-read the file if another process changed it since (``force``: whatever its stamp says;
        an inode freed by one atomic write can come back with the next in the same clock tick)."""
        try:
            st = self.file.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # atomic writes: a new inode each
        except OSError:
            stamp = None
        if stamp == self._stamp and not force:
            return False
        self._stamp = stamp
        self._marks = {}
        self._damaged = False
        try:
            data = json.loads(self.file.read_text("utf-8"))
            for key, marks in data.get("images", {}).items():
                valid = {m for m in marks if isinstance(m, str) and m in MARKS} if isinstance(marks, list) else ()
                if valid:
                    self._marks[key] = valid
        except OSError:
            pass  # no file yet: start empty
        except (ValueError, AttributeError):
            # not JSON (a merge conflict, a hand edit): start empty rather than refuse to open, and
            # set the file aside before the first new mark replaces it (see :meth:`_save`)
            self._damaged = stamp is not None
        return True

    def key(self, image: Path | str) -> str:
        text = os.fspath(image)
        return text[len(self._prefix):] if text.startswith(self._prefix) else text

    def with_mark(self, mark: str) -> set[str]:
        """Keys of every image carrying ``mark`` (for fast counting over thousands of rows)."""
        return {k for k, marks in self._marks.items() if mark in marks}

    def get(self, image: Path | str) -> frozenset[str]:
        return frozenset(self._marks.get(self.key(image), ()))

    def has(self, image: Path | str, mark: str) -> bool:
        return mark in self._marks.get(self.key(image), ())

    def set(self, images: Iterable[Path | str], mark: str, on: bool, *, wait: float | None = None) -> None:
        """Set or clear ``mark`` on ``images``, on top of the marks on disk now (BusyError if another
        process holds the marks for longer than ``wait`` seconds, default the write lock's wait)."""
        if mark not in MARKS:
            raise ValueError(f"unknown mark {mark!r}")
        with self.lock.hold(wait):
            self.reload(force=True)
            self._change(images, mark, on)
            self._save()

    def _change(self, images: Iterable[Path | str], mark: str, on: bool) -> None:
        for image in images:
            key = self.key(image)
            marks = self._marks.setdefault(key, set())
            if on:
                marks.add(mark)
                if mark == "reviewed":
                    marks.discard(NEEDS_REVIEW)
            else:
                marks.discard(mark)
            if not marks:
                del self._marks[key]

    def toggle(self, image: Path | str, mark: str, *, wait: float | None = None) -> bool:
        """Flip one mark as it is on disk now (another process may have set it); returns the new state."""
        with self.lock.hold(wait):
            self.reload(force=True)
            on = not self.has(image, mark)
            self._change([image], mark, on)
            self._save()
        return on

    def count(self, images: Iterable[Path | str], mark: str) -> int:
        return sum(1 for image in images if self.has(image, mark))

    def excluded(self) -> set[str]:
        return {k for k, marks in self._marks.items() if "excluded" in marks}

    def _set_aside(self) -> None:
        """Keep the unreadable file as ``review.json.unreadable[-N]`` (the user's marks may be in it)."""
        for n in range(1000):
            aside = self.file.with_name(f"{REVIEW_FILE}.unreadable" + (f"-{n}" if n else ""))
            if not aside.exists():
                try:
                    os.replace(self.file, aside)
                except OSError as exc:
                    raise WriteError(f"cannot set the unreadable marks file aside: {exc.strerror or exc}",
                                     path=self.file, hint="fix or remove it") from None
                return

    def _save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        if self._damaged:
            self._set_aside()
            self._damaged = False
        data = {"version": 1, "images": {k: sorted(v) for k, v in sorted(self._marks.items())}}
        # compact: json's C encoder (``indent`` falls back to the pure-Python one, ~10x slower,
        # which a captioning run paid per group of captions on a 10,000-image project)
        atomic_write_text(self.file, json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")
        try:
            st = self.file.stat()
            self._stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # atomic writes: a new inode each
        except OSError:
            self._stamp = None
