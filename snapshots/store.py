"""SnapshotStore: a directory of immutable version files, a CURRENT pointer and an index.

Crash safety (details in docs/snapshots.md): every mutation happens under one inter-process
file lock; a version file is written under a temporary name, fsynced and renamed into place
before the index and then the pointer are replaced atomically. A process killed at any
moment therefore leaves at worst a hidden temporary file (removed by the next writer) or a
complete version that is not yet indexed or current (picked up by the next reader). A write
that fails with an error (ENOSPC, EIO, ...) undoes what it made visible and raises
StoreError, so nothing is left half-published.

Reading trusts nothing in the directory: stray entries are ignored with a StoreWarning
(`scan`), every version file is validated (`layout`, `validate`), every index entry checks
its digest (`index`), and a damaged current version makes calibrations start from the newest
healthy one (`baseline`) instead of failing.
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

import fluxcal
from fluxcal.code_version import code_version as current_code_version

from . import index as idx
from .errors import DamagedSnapshot, StoreError, StoreWarning, UnknownVersion
from .fsio import fsync_dir, fsync_file, irregular_kind, is_temp, probe_writable, temp_name
from .layout import Snapshot, file_sha256, read_version, write_version
from .merge import merge_parameters, superseded
from .pointer import CURRENT_NAME, read_current, write_current
from .records import (
    CalibratedParameter,
    ExperimentRecord,
    ParameterChange,
    VerifyProblem,
    VersionInfo,
)
from .scan import Scan, scan_store, version_filename
from .validate import MAX_VERSION

LOCK_NAME = ".lock"
#: Free space a save needs beyond its raw data: HDF5 metadata, index and pointer rewrites.
_SPACE_MARGIN = 1 << 20

Parameters = Mapping[str, Mapping[str, CalibratedParameter]]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Baseline:
    """The version a new calibration starts from and merges onto.

    Normally the current version. When that is missing or damaged, the newest healthy version
    before it (or, failing that, any) stands in, and `notice` says why in one line, so the
    caller can report it; `notice` is "" when the current version was used.
    """

    version: int | None
    parameters: dict[str, dict[str, CalibratedParameter]] = field(default_factory=dict)
    notice: str = ""


class SnapshotStore:
    """Versioned calibration snapshots in one directory (see module docstring)."""

    def __init__(self, path: str | Path, create: bool = True, lock_timeout: float = 60.0):
        self.path = Path(path)
        if not self.path.is_dir():
            if self.path.exists() or not create:
                raise StoreError(f"no snapshot store at {self.path}")
            try:  # another process may create it between the look and the mkdir: fine
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create store {self.path}: {_reason(exc)}") from exc
        self._lock = FileLock(self.path / LOCK_NAME, timeout=lock_timeout)
        self._lock_timeout = lock_timeout
        self._index_path = self.path / idx.INDEX_NAME
        self._cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    # ----------------------------------------------------------------- writing
    def save(
        self,
        parameters: Parameters,
        experiments: Mapping[str, Mapping[str, ExperimentRecord]] | None = None,
        station: Mapping[str, Any] | None = None,
        reason: str = "",
        provenance: Mapping[str, str] | None = None,
        parent: int | None = None,
        make_current: bool = True,
        settings: Mapping[str, Any] | None = None,
        code_version: Mapping[str, Any] | None = None,
    ) -> int:
        """Write a new immutable version holding exactly `parameters`; return its number.

        The lock is held for the whole write: the version number is stored inside the file,
        so it must be allocated before writing, and holding the lock keeps numbers distinct
        across processes. `parent` defaults to the baseline (the current version, or the
        newest healthy one if that is damaged; -1 in an empty store). `settings` are the
        calibration settings the content was made with (JSON data); `code_version` describes
        the code that made it (default: this process's code).
        """
        return self._save(
            lambda _: parameters,
            experiments=experiments,
            station=station,
            reason=reason,
            provenance=provenance,
            parent=parent,
            make_current=make_current,
            settings=settings,
            code_version=code_version,
        )

    def save_changes(
        self,
        changes: Parameters,
        experiments: Mapping[str, Mapping[str, ExperimentRecord]] | None = None,
        station: Mapping[str, Any] | None = None,
        reason: str = "",
        provenance: Mapping[str, str] | None = None,
        make_current: bool = True,
        settings: Mapping[str, Any] | None = None,
        code_version: Mapping[str, Any] | None = None,
    ) -> int:
        """Write a new version: the baseline of this moment with a run's own results merged in.

        Read, merge and write all happen under the lock, so a run that overlapped another
        merges onto what the other saved instead of overwriting it; per parameter, the more
        recent `updated` wins (`merge.merge_parameters`), so no accepted value is replaced by
        an older one. The parent is the version merged onto. A result of this run that the
        merge drops is named in a StoreWarning (`merge.superseded`).
        """

        def merged(base: Baseline) -> dict[str, dict[str, CalibratedParameter]]:
            for line in superseded(base.parameters, changes):
                warnings.warn(line, StoreWarning, stacklevel=4)
            return merge_parameters(base.parameters, changes)

        return self._save(
            merged,
            experiments=experiments,
            station=station,
            reason=reason,
            provenance=provenance,
            parent=None,
            make_current=make_current,
            settings=settings,
            code_version=code_version,
        )

    def rollback(self, version: int, reason: str = "") -> int:
        """Make a new version whose content is `version`'s; history is never rewritten.

        The content includes how it was made: the old version's settings and code version.
        A damaged or forged version is refused (DamagedSnapshot), never copied forward.
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

    def check_writable(self) -> None:
        """Raise StoreError unless a save could write here: write a file, take the lock.

        A calibration calls this before it runs, so a store it could not save to (a
        read-only mount, a folder of another user) costs one line, not the device time of
        a whole chain. Reading a read-only store needs neither the lock nor a write.
        """
        try:
            probe_writable(self.path)
        except OSError as exc:
            why = exc.strerror or _reason(exc)
            raise StoreError(f"cannot write to store {self.path}: {why}") from exc
        with self._locked():
            pass

    def rebuild_index(self) -> None:
        """Recreate index.json from the version files alone (slow: opens every file)."""
        with self._locked():
            self._cache = None
            self._refresh_index(idx.empty_index(), write=True)

    # ----------------------------------------------------------------- reading
    def versions(self) -> list[VersionInfo]:
        """All readable versions, oldest first, from the index."""
        index = self._index()
        return [
            idx.version_info(v, index["versions"][str(v)])
            for v in sorted(int(k) for k in index["versions"])
        ]

    def current_version(self) -> int | None:
        """Version named by CURRENT, or None in a store that has no current version yet.

        Raises StoreError if CURRENT exists but is not a valid pointer.
        """
        return read_current(self.path)

    def baseline(self) -> Baseline:
        """Where a new calibration starts: the current version, or the newest healthy one.

        Never raises over damage: a missing, damaged or forged current version is reported
        in `Baseline.notice` and as a StoreWarning, and the calibration goes on.
        """
        return self._baseline(self._index())

    def load(self, version: int | None = None) -> Snapshot:
        """Read one version (None = current), checking its checksums and content."""
        if version is None:
            version = self.current_version()
            if version is None:
                raise UnknownVersion(f"store {self.path} has no current version")
        if not 1 <= version <= MAX_VERSION:
            raise UnknownVersion(f"no version {version} in store {self.path}")
        path = self.path / version_filename(version)
        try:
            kind = irregular_kind(path)
        except FileNotFoundError:
            raise UnknownVersion(f"no version {version} in store {self.path}") from None
        if kind is not None:
            raise DamagedSnapshot(f"{path.name} is {kind}, not a version file")
        return _check_file(version, path, self._cached_index_entry(version))

    def diff(self, a: int, b: int) -> list[ParameterChange]:
        """Parameters that differ (value, stderr or unit) or exist in only one of a, b."""
        index = self._index()
        old = idx.entry_parameters(self._entry(index, a))
        new = idx.entry_parameters(self._entry(index, b))
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
        """Check every version file, the pointer and the index; read-only, never repairs.

        Index entries are compared with their files field by field (values included), so an
        edited index is reported even when its checksums are intact.
        """
        problems: list[VerifyProblem] = []
        scan = self._scan(warn=False)
        for name, why in sorted(scan.ignored.items()):
            problems.append(VerifyProblem("ignored", None, str(self.path / name), why))
        index_path = str(self._index_path)
        try:
            index, dropped = idx.read_index(self._index_path)
        except FileNotFoundError:
            index, dropped = None, {}
            if scan.versions:
                problems.append(VerifyProblem("index", None, index_path, "index.json is missing"))
        except (OSError, ValueError) as exc:
            index, dropped = None, {}
            message = f"index unusable ({_reason(exc)}); it is rebuilt on next use"
            problems.append(VerifyProblem("index", None, index_path, message))
        for key, line in dropped.items():
            problems.append(VerifyProblem("index", idx.version_key(key), index_path, line))
        entries = {} if index is None else index["versions"]
        damaged: set[int] = set()
        for v, path in sorted(scan.versions.items()):
            problem = self._verify_file(v, path, entries.get(str(v)))
            if problem is not None:
                damaged.add(v)
                problems.append(problem)
            elif index is not None and str(v) not in {**entries, **index["damaged"], **dropped}:
                problems.append(VerifyProblem("index", v, index_path, f"v{v} is not in the index"))
        for key in sorted(entries, key=int):
            if int(key) not in scan.versions:
                message = f"index lists v{key} but its file is missing"
                problems.append(VerifyProblem("index", int(key), index_path, message))
        pointer = self.path / CURRENT_NAME
        try:
            current = self.current_version()
        except StoreError as exc:
            problems.append(VerifyProblem("pointer", None, str(pointer), str(exc)))
        else:
            missing = current not in scan.versions
            state = "missing" if missing else "damaged" if current in damaged else ""
            if current is not None and state:
                message = f"CURRENT names {state} v{current}"
                problems.append(VerifyProblem("pointer", current, str(pointer), message))
        return problems

    # ----------------------------------------------------------------- internals
    def _save(
        self,
        content: Callable[[Baseline], Parameters],
        *,
        experiments: Mapping[str, Mapping[str, ExperimentRecord]] | None,
        station: Mapping[str, Any] | None,
        reason: str,
        provenance: Mapping[str, str] | None,
        parent: int | None,
        make_current: bool,
        settings: Mapping[str, Any] | None,
        code_version: Mapping[str, Any] | None,
    ) -> int:
        provenance = dict(provenance or {})
        experiments = experiments or {}
        code = dict(code_version) if code_version is not None else current_code_version()
        with self._locked():
            self._remove_stale_temps()
            self._check_free_space(experiments)
            index = self._refresh_index(write=True)
            known = {int(k) for k in index["versions"]} | {int(k) for k in index["damaged"]}
            version = max(known | self._scan().taken, default=0) + 1
            if version > MAX_VERSION:
                raise StoreError(
                    f"store {self.path} is full: no version number after {version - 1}"
                )
            base = self._baseline(index)
            parameters = content(base)
            if parent is None:
                parent = -1 if base.version is None else base.version
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
                    experiments=experiments,
                    station=station or {},
                    settings=settings or {},
                    code_version=code,
                )
                fsync_file(tmp)
                digest = file_sha256(tmp)
                os.rename(tmp, final)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise StoreError(f"cannot save v{version} in {self.path}: {_reason(exc)}") from exc
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            entry = idx.make_entry(
                version=version,
                parent=parent,
                created=created,
                reason=reason,
                provenance=provenance,
                fluxcal_version=fluxcal.__version__,
                checksum=checksum,
                file_sha256=digest,
                parameters=parameters,
            )
            self._publish(version, final, index, entry, make_current)
        return version

    def _publish(
        self,
        version: int,
        final: Path,
        index: dict[str, Any],
        entry: dict[str, Any],
        make_current: bool,
    ) -> None:
        """Make a renamed version file known: directory entry, index, then pointer.

        If any step fails, the version file is removed again (and the index put back), so a
        failed save leaves no version that the index or pointer disagree about.
        """
        try:
            fsync_dir(self.path)
            index["versions"][str(version)] = entry
            self._write_index(index)
            if make_current:
                write_current(self.path, version)
        except OSError as exc:
            index["versions"].pop(str(version), None)
            final.unlink(missing_ok=True)
            try:
                self._write_index(index)
            except OSError:
                self._cache = None  # readers drop the entry of the missing file themselves
            raise StoreError(f"cannot save v{version} in {self.path}: {_reason(exc)}") from exc

    def _check_free_space(self, experiments: Mapping[str, Mapping[str, ExperimentRecord]]) -> None:
        """Refuse before writing when the raw data cannot fit: libhdf5 has been seen to crash
        the process, not raise, when the disk fills up in the middle of a write."""
        need = _SPACE_MARGIN + sum(
            int(rec.data.nbytes)
            for recs in experiments.values()
            for rec in recs.values()
            if rec.data is not None
        )
        free = shutil.disk_usage(self.path).free
        if free < need:
            raise StoreError(
                f"not enough space in {self.path}: {free} bytes free, a save needs {need}"
            )

    def _baseline(self, index: Mapping[str, Any]) -> Baseline:
        try:
            current = self.current_version()
            problem = "" if current is not None else "CURRENT is missing"
        except StoreError as exc:
            current, problem = None, str(exc)
        if current is not None:
            try:
                snap = self.load(current)
            except UnknownVersion:
                problem = f"CURRENT names v{current}, which does not exist"
            except DamagedSnapshot as exc:
                problem = f"current version is damaged ({exc})"
            else:
                return Baseline(current, snap.parameters)
        healthy = sorted((int(k) for k in index["versions"]), reverse=True)
        if current is not None and any(v < current for v in healthy):
            healthy = [v for v in healthy if v < current]
        if not healthy and current is None and problem == "CURRENT is missing":
            return Baseline(None)  # an empty store: nothing to start from, nothing wrong
        for v in healthy:
            try:
                snap = self.load(v)
            except StoreError:
                continue
            return self._fallback(Baseline(v, snap.parameters, f"{problem}; starting from v{v}"))
        return self._fallback(Baseline(None, {}, f"{problem}; no healthy version to start from"))

    @staticmethod
    def _fallback(base: Baseline) -> Baseline:
        warnings.warn(base.notice, StoreWarning, stacklevel=4)
        return base

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self._lock.acquire()
        except Timeout as exc:
            raise StoreError(
                f"timed out after {self._lock_timeout:g} s waiting for {self._lock.lock_file}"
            ) from exc
        except OSError as exc:
            why = exc.strerror or _reason(exc)
            raise StoreError(f"cannot lock {self._lock.lock_file}: {why}") from exc
        try:
            yield
        finally:
            self._lock.release()

    def _scan(self, warn: bool = True) -> Scan:
        try:
            scan = scan_store(self.path)
        except OSError as exc:
            raise StoreError(f"cannot list store {self.path}: {_reason(exc)}") from exc
        if warn:
            for name, why in sorted(scan.ignored.items()):
                warnings.warn(f"{self.path / name} ignored: {why}", StoreWarning, stacklevel=4)
        return scan

    def _remove_stale_temps(self) -> None:
        """Only lock holders write temporary files, so under the lock any left are orphans."""
        removed = False
        with os.scandir(self.path) as it:
            for entry in it:
                if is_temp(entry.name) and not entry.is_dir(follow_symlinks=False):
                    os.unlink(entry.path)
                    removed = True
        if removed:
            fsync_dir(self.path)

    def _read_index_cached(self) -> dict[str, Any] | None:
        """Parsed index, re-read only when the file was replaced; None if missing or unusable.

        Entries that fail their digest are dropped here (with a warning), so they count as
        not covered and are re-derived from their files.
        """
        try:
            st = os.lstat(self._index_path)
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        try:
            index, dropped = idx.read_index(self._index_path)
        except (OSError, ValueError) as exc:
            warnings.warn(
                f"{self._index_path} unusable ({_reason(exc)}); rebuilding it from the files",
                StoreWarning,
                stacklevel=4,
            )
            return None
        for line in dropped.values():
            warnings.warn(f"{line}; re-reading it from its file", StoreWarning, stacklevel=4)
        self._cache = (key, index)
        return index

    def _write_index(self, index: dict[str, Any]) -> None:
        idx.write_index(self._index_path, index)
        st = os.lstat(self._index_path)
        self._cache = ((st.st_ino, st.st_mtime_ns, st.st_size), index)

    def _cached_index_entry(self, version: int) -> dict[str, Any] | None:
        index = self._read_index_cached()
        return None if index is None else index["versions"].get(str(version))

    def _index(self) -> dict[str, Any]:
        """The index, brought in line with the files on disk.

        The refreshed index is written back under the lock; when the lock cannot be had (a
        read-only store, a long save in progress), readers use it in memory instead of
        failing or waiting.
        """
        index = self._read_index_cached()
        if index is not None and self._covers_disk(index):
            return index
        try:
            with self._locked():
                return self._refresh_index(write=True)
        except StoreError:
            return self._refresh_index(write=False)

    def _covers_disk(self, index: dict[str, Any]) -> bool:
        known = {int(k) for k in index["versions"]} | {int(k) for k in index["damaged"]}
        return known == self._scan().versions.keys()

    def _refresh_index(self, index: dict[str, Any] | None = None, *, write: bool) -> dict[str, Any]:
        """Bring the index in line with the files on disk; writing needs the caller's lock."""
        missing = index is None and self._read_index_cached() is None
        if index is None:
            index = self._read_index_cached() or idx.empty_index()
        disk = self._scan().versions
        changed = missing
        for table in (index["versions"], index["damaged"]):
            for key in [k for k in table if int(k) not in disk]:
                del table[key]
                changed = True
        known = {int(k) for k in index["versions"]} | {int(k) for k in index["damaged"]}
        for v in sorted(disk.keys() - known):
            changed = True
            try:
                snap = _check_file(v, disk[v], None)
                index["versions"][str(v)] = idx.entry_from_snapshot(snap, file_sha256(disk[v]))
            except (DamagedSnapshot, OSError) as exc:
                index["damaged"][str(v)] = _reason(exc)
                warnings.warn(f"{_reason(exc)}; left out of the index", StoreWarning, stacklevel=4)
        if changed and write:
            try:
                self._write_index(index)
            except OSError as exc:
                raise StoreError(f"cannot write {self._index_path}: {_reason(exc)}") from exc
        return index

    def _entry(self, index: Mapping[str, Any], version: int) -> dict[str, Any]:
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
        if entry is not None and not idx.same_entry(
            entry, idx.entry_from_snapshot(snap, entry["file_sha256"])
        ):
            message = f"index entry of v{version} disagrees with its file"
            return VerifyProblem("index", version, str(self._index_path), message)
        return None


def _check_file(version: int, path: Path, entry: Mapping[str, Any] | None) -> Snapshot:
    """Read a version file and check its embedded checksum, its version number and, when the
    index recorded one at save time, the sha256 of the whole file (catches any byte change)."""
    snap = read_version(path)
    if snap.version != version:
        raise DamagedSnapshot(f"{path.name} is damaged: it claims to be version {snap.version}")
    if entry is not None:
        try:
            digest = file_sha256(path)
        except OSError as exc:
            raise DamagedSnapshot(f"{path.name} is unreadable: {_reason(exc)}") from exc
        if digest != entry["file_sha256"]:
            raise DamagedSnapshot(f"{path.name} is damaged: file bytes changed since it was saved")
    return snap


def _same(p: CalibratedParameter, q: CalibratedParameter) -> bool:
    """Same value, stderr and unit, counting nan == nan (plain float comparison does not)."""

    def same(x: float, y: float) -> bool:
        return x == y or (math.isnan(x) and math.isnan(y))

    return same(p.value, q.value) and same(p.stderr, q.stderr) and p.unit == q.unit


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
