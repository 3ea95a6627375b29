"""Durable file operations: the few primitives the crash-safety argument rests on.

A file becomes visible under its final name only by rename of a fully written, fsynced
temporary file in the same directory; the directory is fsynced afterwards so the rename
itself survives a power loss. Temporary names start with "." and contain TMP_MARK, so they
never match a version file name and a later writer can recognise and remove them.
"""

from __future__ import annotations

import os
from pathlib import Path

TMP_MARK = ".tmp-"


def temp_name(final: Path) -> Path:
    """Hidden per-process temporary name next to `final` (same directory, so rename is atomic)."""
    return final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}")


def is_temp(name: str) -> bool:
    return name.startswith(".") and TMP_MARK in name


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


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` so readers see either the old or the new content, whole."""
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
