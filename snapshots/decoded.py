"""Version files this process has already decoded, kept by the sha256 of their bytes.

Why: what a version file holds is fixed by its bytes, and decoding one checks it object by
object (every attribute validated, the content checksum recomputed over the raw data). A
process that reads the same versions again paid that each time: the metrics exporter reads
the current version on every scrape, the alert-rules tests read five files 130 times (13 of
their 34 CPU-s). Bytes seen before are answered from here; any other bytes, damaged ones
included, are decoded and checked in full (`layout.read_version`).

Snapshots are kept pickled: every reader gets a fresh copy it may change, and the memory
held is counted exactly and bounded in bytes (`MAX_BYTES`), whatever the size of the
station snapshots inside (a few kB for the simulator, ~100 kB for a 16-qubit chip). Raw data
is never held: a Snapshot reads it from its file on demand.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from .layout import Snapshot

#: Memory the kept snapshots may take, the least recently read dropped first.
MAX_BYTES = 8 << 20

_kept: OrderedDict[str, bytes] = OrderedDict()
_held = 0
_lock = threading.Lock()


def recall(digest: str, path: Path) -> Snapshot | None:
    """A copy of the snapshot decoded before from bytes with this sha256, now at `path`."""
    with _lock:
        pickled = _kept.get(digest)
        if pickled is None:
            return None
        _kept.move_to_end(digest)
    snapshot = pickle.loads(pickled)
    snapshot.path = path
    return snapshot


def remember(digest: str, snapshot: Snapshot) -> None:
    """Keep `snapshot`, decoded from bytes with this sha256 (a copy: the caller may change
    the one it was given)."""
    global _held
    pickled = pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL)
    if len(pickled) > MAX_BYTES:
        return
    with _lock:
        previous = _kept.pop(digest, None)
        _held -= len(previous) if previous is not None else 0
        _kept[digest] = pickled
        _held += len(pickled)
        while _held > MAX_BYTES:
            _held -= len(_kept.popitem(last=False)[1])


def forget() -> None:
    """Drop every snapshot kept."""
    global _held
    with _lock:
        _kept.clear()
        _held = 0


def _after_fork() -> None:
    """A forked child starts empty, with a lock of its own: another thread of the parent may
    have held the lock, mid-change, at the fork."""
    global _held, _lock
    _lock = threading.Lock()
    _kept.clear()
    _held = 0


os.register_at_fork(after_in_child=_after_fork)
