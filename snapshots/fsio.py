"""Durable and defensive file operations: the primitives the crash-safety argument rests on.

A file becomes visible under its final name only by rename of a fully written, fsynced
temporary file in the same directory; the directory is fsynced afterwards so the rename
itself survives a power loss. Temporary names start with "." and contain TMP_MARK, so they
never match a version file name and a later writer can recognise and remove them.

Reading is defensive: anything in a store directory may have been replaced by a FIFO (opening
it blocks forever), a symbolic link out of the store or a directory, so files are checked with
lstat before they are opened, and opened with O_NOFOLLOW | O_NONBLOCK so a swap between the
check and the open cannot hang or escape either.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

TMP_MARK = ".tmp-"

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def temp_name(final: Path) -> Path:
    """Hidden per-process temporary name next to `final` (same directory, so rename is atomic)."""
    return final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}")


def is_temp(name: str) -> bool:
    return name.startswith(".") and TMP_MARK in name


def irregular_kind(path: Path) -> str | None:
    """None if `path` is a regular file (not followed if a link), else what it is instead.

    Raises FileNotFoundError if nothing is there.
    """
    mode = os.lstat(path).st_mode
    if stat.S_ISREG(mode):
        return None
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes.

    Raises FileNotFoundError if absent, OSError naming the problem if it is not a regular
    file or larger than `limit` (a pointer or index that size is damage, not data).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path.name} is {_KINDS.get(stat.S_IFMT(st.st_mode), 'irregular')}")
        if st.st_size > limit:
            raise OSError(f"{path.name} is {st.st_size} bytes, more than {limit} allowed")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(limit + 1)[:limit]
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Persist directory entries (renames, unlinks) of `path`."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def probe_writable(directory: Path) -> None:
    """Create, fsync and remove a temporary file in `directory`, or raise the OSError that
    writing there raises (EROFS on a read-only mount, EACCES, EPERM on an immutable folder).

    What a save does first, tried before work is spent on results that could not be kept.
    """
    probe = temp_name(directory / "write-probe")
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` so readers see either the old or the new content, whole.

    On any failure (ENOSPC included) the temporary file is removed and `path` is untouched.
    """
    tmp = temp_name(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
