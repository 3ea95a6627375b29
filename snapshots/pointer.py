"""The CURRENT pointer: one line naming the version in use.

It is tiny and rewritten atomically, so anything else found under its name (a FIFO, a link,
a directory, megabytes of text, bytes that are not UTF-8) is damage, reported as StoreError
with one line saying what was found, never a hang or a decoding traceback.
"""

from __future__ import annotations

from pathlib import Path

from .errors import StoreError
from .fsio import atomic_write_text, read_regular
from .scan import parse_version_name, version_filename

CURRENT_NAME = "CURRENT"
#: "v000001.h5\n" with room for longer numbers; more than this is not a pointer.
_MAX_BYTES = 64


def read_current(store: Path) -> int | None:
    """Version named by store/CURRENT, or None if there is no pointer yet."""
    path = store / CURRENT_NAME
    try:
        raw = read_regular(path, _MAX_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"{path} is unusable: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise StoreError(f"{path} is damaged: not UTF-8 text") from exc
    version = parse_version_name(text)
    if version is None:
        raise StoreError(f"{path} does not name a version file: {text[:40]!r}")
    return version


def write_current(store: Path, version: int) -> None:
    atomic_write_text(store / CURRENT_NAME, version_filename(version) + "\n")
