"""Compare-and-swap writes of many files: replace a file only if it still holds what we read.

A bulk edit reads its captions, computes the new texts, and only then writes; anything may change a
caption in between (an editor, a script, the app). :func:`swap_many` re-reads every file right
before replacing it and compares the content (bytes, not mtime) with what the caller read; a file
that differs is left alone and reported, never overwritten. One file that cannot be written (read
only, a folder in its place) is reported the same way and the rest are still written.

Temporaries are written first (into a fresh folder under ``tmp_dir`` when that is on the same
filesystem, so a crash leaves nothing in the user's folders, else next to the target; both with the
recognisable name from :mod:`lora_tui.core.fsio`), flushed with one sync per filesystem (or an fsync
each for a handful), then swapped in one by one. A fresh folder per batch, because creating files in
a folder that once held 10,000 others is up to 20× slower on ext4.

No filesystem offers compare-and-rename, so a write by someone else in the microseconds between the
re-read and the rename can still be replaced; the check shrinks that window from the length of the
operation to one file's rename.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

from lora_tui.core.fsio import WriteError, fsync_dir, new_token, syncfs, tmp_name

FSYNC_EACH_UP_TO = 8  # below this many files, fsync each one rather than flush the whole filesystem
CHANGED_ELSEWHERE = "changed elsewhere"


@dataclass(frozen=True)
class Swap:
    """Replace ``path`` by ``data`` if it still holds ``expect`` (None: absent / delete it)."""

    path: str
    expect: bytes | None
    data: bytes | None


@dataclass
class SwapResult:
    """Which paths now hold the new content, and which were left alone and why."""

    written: list[str] = field(default_factory=list)
    left_alone: list[tuple[str, str]] = field(default_factory=list)


def read_current(path: str) -> bytes | None:
    """The file's bytes, or None if there is no file. Raises OSError for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        chunk = os.read(fd, 1 << 16)
        if len(chunk) < 1 << 16:  # a regular file reads short only at its end: most captions in one call
            return chunk
        chunks = [chunk]
        while chunk:
            chunk = os.read(fd, 1 << 20)
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _why_not_writable(path: str, folder: str, folder_ok: dict[str, str | None]) -> tuple[str | None, int | None]:
    """A reason the file cannot be replaced (or None), and the mode a replacement keeps (None: new)."""
    if folder not in folder_ok:
        if not os.path.isdir(folder):
            folder_ok[folder] = f"folder {folder} does not exist"
        elif not os.access(folder, os.W_OK):
            folder_ok[folder] = f"folder {folder} is not writable (chmod u+w '{folder}')"
        else:
            folder_ok[folder] = None
    if folder_ok[folder]:
        return folder_ok[folder], 0
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}", 0
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not a file", 0
    if stat.S_ISLNK(st.st_mode):
        return "is a symlink (an atomic save would replace the link; replace it with a copy)", 0
    if not _writable(path, st):
        return f"read-only (chmod u+w '{path}' to allow edits)", 0
    return None, st.st_mode & 0o777


_EUID = os.geteuid() if hasattr(os, "geteuid") else None


def _writable(path: str, st: os.stat_result) -> bool:
    """``os.access(W_OK)`` without a second system call for the usual case: our own file with its
    owner-write bit set (the caller's bits decide, as the kernel's check does; anything else asks)."""
    if _EUID is not None and st.st_uid == _EUID and _EUID != 0:
        return bool(st.st_mode & stat.S_IWUSR)
    return os.access(path, os.W_OK)


def _write_tmp(path: str, data: bytes, mode: int, umask: int) -> None:
    """Write a new temporary file with exactly ``mode`` (os.open applies the umask; fchmod if it bites)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if mode & umask:
            os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def flush(paths: Sequence[str], folders: set[str] | None = None) -> None:
    """Make ``paths`` durable: fsync each for a few files, else one ``syncfs`` per filesystem.
    ``folders`` are the folders the paths are in, when the caller knows them already."""
    if len(paths) <= FSYNC_EACH_UP_TO:
        for path in paths:
            _fsync_path(path)
        return
    devices: dict[int, str] = {}
    for folder in folders if folders is not None else {os.path.dirname(p) or "." for p in paths}:
        with contextlib.suppress(OSError):
            devices.setdefault(os.stat(folder).st_dev, folder)
    for folder in devices.values():
        if not syncfs(folder):
            for path in paths:
                _fsync_path(path)
            return


def _tmp_folder(target_folder: str, tmp_dir: str | None, devices: dict[str, int]) -> str:
    """``tmp_dir`` if it shares the target's filesystem (a rename cannot cross filesystems)."""
    if tmp_dir is None:
        return target_folder
    for folder in (tmp_dir, target_folder):
        if folder not in devices:
            try:
                devices[folder] = os.stat(folder).st_dev
            except OSError:
                devices[folder] = -1
    return tmp_dir if devices[tmp_dir] == devices[target_folder] != -1 else target_folder


def swap_many(items: Sequence[Swap], tmp_dir: str | None = None) -> SwapResult:
    """Write every item whose file still holds ``expect``; report the others (see module doc).

    Raises :class:`WriteError` only if no file was touched (e.g. the disk is full while writing
    the temporaries); once the swaps begin, every failure is per file.
    """
    result = SwapResult()
    folder_ok: dict[str, str | None] = {}
    devices: dict[str, int] = {}
    umask = os.umask(0)
    os.umask(umask)
    token = new_token()
    todo: list[tuple[Swap, str, str | None]] = []
    tmps: list[str] = []
    tmp_folders: set[str] = set()
    batch = _batch_folder(tmp_dir, token)
    try:
        for n, item in enumerate(items):
            folder, name = os.path.split(item.path)
            folder = folder or "."
            why, mode = _why_not_writable(item.path, folder, folder_ok)
            if why:
                result.left_alone.append((item.path, why))
                continue
            tmp = None
            if item.data is not None:
                tmp_folder = _tmp_folder(folder, batch, devices)
                tmp_folders.add(tmp_folder)
                tmp = tmp_name(tmp_folder, f"{n}.{name}", token)
                try:
                    _write_tmp(tmp, item.data, (0o644 & ~umask) if mode is None else mode, umask)
                except OSError as exc:
                    raise WriteError(f"cannot write: {exc.strerror or exc}", path=item.path,
                                     hint="nothing was changed; free some space or fix the folder") from exc
                tmps.append(tmp)
            todo.append((item, folder, tmp))
        flush(tmps, tmp_folders)
    except BaseException:
        for tmp in tmps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        _remove_batch(batch)
        raise
    touched: set[str] = set()
    try:
        for index, (item, folder, tmp) in enumerate(todo):
            why = _swap_one(item, tmp)
            if why is None:
                result.written.append(item.path)
                touched.add(folder)
            else:
                result.left_alone.append((item.path, why))
            todo[index] = (item, folder, None)
    finally:
        for _, _, tmp in todo:  # interrupted (Ctrl-C): no temporary outlives us
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        for folder in touched:
            fsync_dir(folder)
        _remove_batch(batch)
    return result


def _batch_folder(tmp_dir: str | None, token: str) -> str | None:
    """A new folder for this batch's temporaries under ``tmp_dir`` (None: write beside the targets)."""
    if tmp_dir is None:
        return None
    batch = tmp_name(tmp_dir, "batch", token)
    try:
        os.mkdir(batch, 0o700)
    except OSError:
        return None
    return batch


def _remove_batch(batch: str | None) -> None:
    if batch is not None:
        with contextlib.suppress(OSError):
            os.rmdir(batch)


def _swap_one(item: Swap, tmp: str | None) -> str | None:
    """Replace one file if it still holds what the caller read; the reason if not."""
    why = _try_swap(item, tmp)
    if tmp is not None and (why is not None or item.expect is None):  # a rename did not consume it
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return why


def _try_swap(item: Swap, tmp: str | None) -> str | None:
    try:
        current = read_current(item.path)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if current != item.expect:
        return CHANGED_ELSEWHERE
    try:
        if tmp is None:
            if current is not None:
                os.unlink(item.path)
        elif item.expect is None:
            _create(tmp, item.path)
        else:
            _replace(tmp, item.path)
    except FileExistsError:
        return CHANGED_ELSEWHERE  # created by someone else since the check
    except FileNotFoundError:
        return CHANGED_ELSEWHERE if tmp is None else "cannot replace: its temporary file vanished"
    except OSError as exc:
        return f"cannot replace: {exc.strerror or exc}"
    return None


def _create(tmp: str, path: str) -> None:
    """A new file: a hard link fails if someone created the file since the check, a rename would not."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if os.path.lexists(path):  # a filesystem without hard links (or across mounts): check, rename
            raise FileExistsError(errno.EEXIST, "exists") from exc
        _replace(tmp, path)


def _replace(tmp: str, path: str) -> None:
    try:
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # the temp folder turned out to be another mount: write next to the target instead
        with open(tmp, "rb") as f:
            data = f.read()
        mode = os.stat(tmp).st_mode & 0o777
        folder, name = os.path.split(path)
        local = tmp_name(folder or ".", name, new_token())
        try:
            _write_tmp(local, data, mode, 0o777)
            _fsync_path(local)
            os.replace(local, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(local)
