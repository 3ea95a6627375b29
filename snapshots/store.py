"""SnapshotStore: a directory of immutable version files, a CURRENT pointer and an index.

Crash safety (details in docs/snapshots.md): every mutation happens under one inter-process
file lock; a version file is written under a temporary name, fsynced and renamed into place
before the index and then the pointer are replaced atomically. A process killed at any
moment therefore leaves at worst a hidden temporary file (removed by the next writer) or a
complete version that is not yet indexed or current (picked up by the next reader).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

import fluxcal
from fluxcal.code_version import code_version as current_code_version

from . import index as idx
from .errors import DamagedSnapshot, StoreError, UnknownVersion
from .fsio import atomic_write_text, fsync_dir, fsync_file, is_temp, temp_name
from .layout import Snapshot, file_sha256, read_version, write_version
from .records import (
    CalibratedParameter,
    ExperimentRecord,
    ParameterChange,
    VerifyProblem,
    VersionInfo,
)

VERSION_RE = re.compile(r"^v(\d{6,})\.h5$")
CURRENT_NAME = "CURRENT"
LOCK_NAME = ".lock"


def version_filename(version: int) -> str:
    return f"v{version:06d}.h5"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class SnapshotStore:
    """Versioned calibration snapshots in one directory (see module docstring)."""

    def __init__(self, path: str | Path, create: bool = True, lock_timeout: float = 60.0):
        self.path = Path(path)
        if not self.path.is_dir():
            if self.path.exists() or not create:
                raise StoreError(f"no snapshot store at {self.path}")
            self.path.mkdir(parents=True)
        self._lock = FileLock(self.path / LOCK_NAME, timeout=lock_timeout)
        self._lock_timeout = lock_timeout
        self._index_path = self.path / idx.INDEX_NAME
        self._cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    # ----------------------------------------------------------------- writing
    def save(
        self,
        parameters: Mapping[str, Mapping[str, CalibratedParameter]],
        experiments: Mapping[str, Mapping[str, ExperimentRecord]] | None = None,
        station: Mapping[str, Any] | None = None,
        reason: str = "",
        provenance: Mapping[str, str] | None = None,
        parent: int | None = None,
        make_current: bool = True,
        settings: Mapping[str, Any] | None = None,
        code_version: Mapping[str, Any] | None = None,
    ) -> int:
        """Write a new immutable version and return its number.

        The lock is held for the whole write: the version number is stored inside the file,
        so it must be allocated before writing, and holding the lock keeps numbers distinct
        across processes. `parent` defaults to the current version (-1 in an empty store).
        `settings` are the calibration settings the content was made with (JSON data);
        `code_version` describes the code that made it (default: this process's code).
        """
        provenance = dict(provenance or {})
        code = dict(code_version) if code_version is not None else current_code_version()
        with self._locked():
            self._remove_stale_temps()
            index = self._refresh_index_locked()
            known = self._disk_versions().keys() | {int(v) for v in index["versions"]}
            version = max(known, default=0) + 1
            if parent is None:
                current = self.current_version()
                parent = -1 if current is None else current
            created = utc_now()
            final = self.path / version_filename(version)
            tmp = temp_name(final)
            try:
                checksum = write_version(
                    tmp,
                    version=version,
                    parent=parent,
                    created=created,
                    reason=reason,
                    provenance=provenance,
                    parameters=parameters,
                    experiments=experiments or {},
                    station=station or {},
                    settings=settings or {},
                    code_version=code,
                )
                fsync_file(tmp)
                digest = file_sha256(tmp)
                os.rename(tmp, final)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            fsync_dir(self.path)
            index["versions"][str(version)] = idx.make_entry(
                parent=parent,
                created=created,
                reason=reason,
                provenance=provenance,
                fluxcal_version=fluxcal.__version__,
                checksum=checksum,
                file_sha256=digest,
                parameters=parameters,
            )
            self._write_index_locked(index)
            if make_current:
                atomic_write_text(self.path / CURRENT_NAME, version_filename(version) + "\n")
        return version

    def rollback(self, version: int, reason: str = "") -> int:
        """Make a new version whose content is `version`'s; history is never rewritten.

        The content includes how it was made: the old version's settings and code version.
        """
        old = self.load(version)
        experiments = {q: recs for q in old.qubits if (recs := old.experiments(q))}
        note = f"rollback to v{version}" + (f": {reason}" if reason else "")
        return self.save(
            old.parameters,
            experiments=experiments,
            station=old.station,
            reason=note,
            provenance={**old.provenance, "rollback_of": str(version)},
            settings=old.settings,
            code_version=old.code_version,
        )

    def rebuild_index(self) -> None:
        """Recreate index.json from the version files alone (slow: opens every file)."""
        with self._locked():
            self._cache = None
            self._refresh_index_locked(idx.empty_index())

    # ----------------------------------------------------------------- reading
    def versions(self) -> list[VersionInfo]:
        """All readable versions, oldest first, from the index."""
        index = self._index()
        return [
            idx.version_info(v, index["versions"][str(v)])
            for v in sorted(int(k) for k in index["versions"])
        ]

    def current_version(self) -> int | None:
        """Version named by CURRENT, or None in a store that has no current version yet."""
        try:
            text = (self.path / CURRENT_NAME).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {self.path / CURRENT_NAME}: {exc.strerror}") from exc
        match = VERSION_RE.match(text)
        if match is None:
            raise StoreError(f"{self.path / CURRENT_NAME} does not name a version file: {text!r}")
        return int(match.group(1))

    def load(self, version: int | None = None) -> Snapshot:
        """Read one version (None = current), checking its checksums."""
        if version is None:
            version = self.current_version()
            if version is None:
                raise UnknownVersion(f"store {self.path} has no current version")
        path = self.path / version_filename(version)
        if not path.is_file():
            raise UnknownVersion(f"no version {version} in store {self.path}")
        return _check_file(version, path, self._cached_index_entry(version))

    def diff(self, a: int, b: int) -> list[ParameterChange]:
        """Parameters that differ (value, stderr or unit) or exist in only one of a, b."""
        old = idx.entry_parameters(self._entry(a))
        new = idx.entry_parameters(self._entry(b))
        changes = []
        for key in sorted(old.keys() | new.keys()):
            p, q = old.get(key), new.get(key)
            if p is not None and q is not None:
                if _same(p, q):
                    continue
                delta = q.value - p.value
                change = ParameterChange(
                    *key, p, q, delta, idx.significance(delta, p, q), q.unit, "changed"
                )
            else:
                kind = "added" if p is None else "removed"
                unit = q.unit if q is not None else p.unit  # type: ignore[union-attr]
                change = ParameterChange(*key, p, q, math.nan, math.nan, unit, kind)
            changes.append(change)
        return changes

    def history(self, qubit: str, name: str) -> list[tuple[int, CalibratedParameter]]:
        """Every version holding qubit/name, oldest first, from the index."""
        index = self._index()["versions"]
        out = []
        for v in sorted(int(k) for k in index):
            p = idx.entry_parameter(index[str(v)], qubit, name)
            if p is not None:
                out.append((v, p))
        return out

    def verify(self) -> list[VerifyProblem]:
        """Check every version file, the pointer and the index; read-only, never repairs."""
        problems: list[VerifyProblem] = []
        disk = self._disk_versions()
        try:
            index = idx.read_index(self._index_path)
        except (OSError, ValueError) as exc:
            index = None
            problems.append(
                VerifyProblem(
                    "index",
                    None,
                    str(self._index_path),
                    f"index unusable ({_reason(exc)}); it is rebuilt on next use",
                )
            )
        entries = {} if index is None else index["versions"]
        damaged: set[int] = set()
        for v, path in sorted(disk.items()):
            problem = self._verify_file(v, path, entries.get(str(v)))
            if problem is not None:
                damaged.add(v)
                problems.append(problem)
            elif index is not None and str(v) not in entries:
                problems.append(
                    VerifyProblem("index", v, str(self._index_path), f"v{v} is not in the index")
                )
        for key in sorted(entries, key=int):
            if int(key) not in disk:
                problems.append(
                    VerifyProblem(
                        "index",
                        int(key),
                        str(self._index_path),
                        f"index lists v{key} but its file is missing",
                    )
                )
        pointer = self.path / CURRENT_NAME
        try:
            current = self.current_version()
        except StoreError as exc:
            problems.append(VerifyProblem("pointer", None, str(pointer), str(exc)))
        else:
            state = "missing" if current not in disk else "damaged" if current in damaged else ""
            if current is not None and state:
                message = f"CURRENT names {state} v{current}"
                problems.append(VerifyProblem("pointer", current, str(pointer), message))
        return problems

    # ----------------------------------------------------------------- internals
    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self._lock.acquire()
        except Timeout as exc:
            raise StoreError(
                f"timed out after {self._lock_timeout:g} s waiting for {self._lock.lock_file}"
            ) from exc
        try:
            yield
        finally:
            self._lock.release()

    def _disk_versions(self) -> dict[int, Path]:
        out = {}
        with os.scandir(self.path) as it:
            for entry in it:
                match = VERSION_RE.match(entry.name)
                if match is not None:
                    out[int(match.group(1))] = Path(entry.path)
        return out

    def _remove_stale_temps(self) -> None:
        """Only lock holders write temporary files, so under the lock any left are orphans."""
        removed = False
        with os.scandir(self.path) as it:
            for entry in it:
                if is_temp(entry.name):
                    os.unlink(entry.path)
                    removed = True
        if removed:
            fsync_dir(self.path)

    def _read_index_cached(self) -> dict[str, Any] | None:
        """Parsed index, re-read only when the file was replaced; None if missing or unusable."""
        try:
            st = os.stat(self._index_path)
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        try:
            index = idx.read_index(self._index_path)
        except (OSError, ValueError):
            return None
        self._cache = (key, index)
        return index

    def _write_index_locked(self, index: dict[str, Any]) -> None:
        idx.write_index(self._index_path, index)
        st = os.stat(self._index_path)
        self._cache = ((st.st_ino, st.st_mtime_ns, st.st_size), index)

    def _cached_index_entry(self, version: int) -> dict[str, Any] | None:
        index = self._read_index_cached()
        return None if index is None else index["versions"].get(str(version))

    def _index(self) -> dict[str, Any]:
        """The index, extended under the lock if version files exist that it does not cover."""
        index = self._read_index_cached()
        if index is not None and self._covers_disk(index):
            return index
        with self._locked():
            return self._refresh_index_locked()

    def _covers_disk(self, index: dict[str, Any]) -> bool:
        known = {int(k) for k in index["versions"]} | {int(k) for k in index["damaged"]}
        return known == self._disk_versions().keys()

    def _refresh_index_locked(self, index: dict[str, Any] | None = None) -> dict[str, Any]:
        """Bring the index in line with the files on disk; caller holds the lock."""
        if index is None:
            index = self._read_index_cached() or idx.empty_index()
        disk = self._disk_versions()
        changed = False
        for table in (index["versions"], index["damaged"]):
            for key in [k for k in table if int(k) not in disk]:
                del table[key]
                changed = True
        known = {int(k) for k in index["versions"]} | {int(k) for k in index["damaged"]}
        for v in sorted(disk.keys() - known):
            changed = True
            try:
                snap = _check_file(v, disk[v], None)
            except DamagedSnapshot as exc:
                index["damaged"][str(v)] = str(exc)
                continue
            index["versions"][str(v)] = idx.entry_from_snapshot(snap, file_sha256(disk[v]))
        if changed or not self._index_path.exists():
            self._write_index_locked(index)
        return index

    def _entry(self, version: int) -> dict[str, Any]:
        index = self._index()
        entry = index["versions"].get(str(version))
        if entry is not None:
            return entry
        if str(version) in index["damaged"]:
            raise DamagedSnapshot(index["damaged"][str(version)])
        raise UnknownVersion(f"no version {version} in store {self.path}")

    def _verify_file(
        self, version: int, path: Path, entry: Mapping[str, Any] | None
    ) -> VerifyProblem | None:
        try:
            snap = _check_file(version, path, entry)
        except DamagedSnapshot as exc:
            return VerifyProblem("damaged", version, str(path), str(exc))
        if entry is not None and entry["checksum"] != snap.checksum:
            return VerifyProblem(
                "index", version, str(self._index_path), f"index checksum of v{version} is stale"
            )
        return None


def _check_file(version: int, path: Path, entry: Mapping[str, Any] | None) -> Snapshot:
    """Read a version file and check its embedded checksum, its version number and, when the
    index recorded one at save time, the sha256 of the whole file (catches any byte change)."""
    snap = read_version(path)
    if snap.version != version:
        raise DamagedSnapshot(f"{path.name} is damaged: it claims to be version {snap.version}")
    if entry is not None and file_sha256(path) != entry["file_sha256"]:
        raise DamagedSnapshot(f"{path.name} is damaged: file bytes changed since it was saved")
    return snap


def _same(p: CalibratedParameter, q: CalibratedParameter) -> bool:
    """Same value, stderr and unit, counting nan == nan (plain float comparison does not)."""

    def same(x: float, y: float) -> bool:
        return x == y or (math.isnan(x) and math.isnan(y))

    return same(p.value, q.value) and same(p.stderr, q.stderr) and p.unit == q.unit


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
