"""Read and write one version file: the HDF5 layout contract and its content checksum.

Layout (see docs/snapshots.md)::

    /                                   attrs: format, format_version, version, parent, created,
                                               reason, provenance (JSON), fluxcal_version,
                                               code_version (JSON), checksum
    /station                            scalar string dataset: QCoDeS station snapshot as JSON
    /settings                           scalar string dataset: calibration settings as JSON
    /qubits/<q>/parameters/<name>       attrs: value, stderr, unit, experiment, updated
    /qubits/<q>/experiments/<e>         attrs: outcome, reason, report, updated, device_seconds
    /qubits/<q>/experiments/<e>/fit/<p> attrs: value, stderr
    /qubits/<q>/experiments/<e>/data    netCDF4 group written by xarray (h5netcdf engine)

This module knows nothing about directories, locks or the index: the store decides where a
file goes and when it becomes visible. `code_version` and `/settings` arrived after the first
files were written; a file without them reads back with both empty. Raw data is packed to
within its noise (single shots as integer counts, averaged data as complex64: `packing`) and
written with gzip + shuffle; readers need nothing but stock HDF5 1.10. Every read goes through
`validate`, so a file is either returned whole and well-formed or refused as DamagedSnapshot.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

import fluxcal

if TYPE_CHECKING:  # imported where raw data is read: listing a store needs none of it
    import xarray

from . import decoded
from . import validate as check
from .errors import DamagedSnapshot
from .fsio import irregular_kind
from .records import CalibratedParameter, ExperimentRecord
from .validate import FORMAT, FORMAT_VERSION

DATA_GROUP = "data"
_CHUNK = 1 << 20
#: gzip level 4: on recorded runs levels 1..9 differ by < 1 % in size, 4 is twice as fast as 6.
_GZIP_LEVEL = 4
#: Variables up to this size are one chunk (best ratio); larger ones let HDF5 choose.
_ONE_CHUNK_BYTES = 1 << 22
#: HDF5 1.10 object formats: a one-chunk dataset needs no chunk B-tree (version-1 B-trees
#: cost ~3 kB per variable, 0.2 MB a calibration) and groups keep links in their header.
#: Readable by every HDF5 since 1.10 (2016), and so by netCDF-C and h5py built on it.
_LIBVER = ("v110", "latest")


@dataclass
class Snapshot:
    """Content of one version. Parameters and station are read eagerly; raw data on demand."""

    version: int
    parent: int
    created: str
    reason: str
    provenance: dict[str, str]
    fluxcal_version: str
    checksum: str
    parameters: dict[str, dict[str, CalibratedParameter]]
    station: dict
    path: Path
    experiment_names: dict[str, list[str]] = field(default_factory=dict)
    #: Settings the calibration ran with: qubit -> node -> field -> value ({} if unrecorded).
    settings: dict[str, Any] = field(default_factory=dict)
    #: Code that made it: {"fluxcal": version, "git_commit": sha, "git_dirty": bool} or {}.
    code_version: dict[str, Any] = field(default_factory=dict)

    @property
    def qubits(self) -> list[str]:
        """Every qubit with parameters or experiments in this version."""
        return sorted(set(self.parameters) | set(self.experiment_names))

    def experiments(self, qubit: str, raw: bool = True) -> dict[str, ExperimentRecord]:
        """Experiment records of one qubit, raw data loaded into memory (the file stays
        closed); `raw=False` leaves the data out (outcomes and fits only, and no xarray)."""
        if not self.experiment_names.get(qubit):
            return {}
        return read_experiments(self.path, qubit, raw)


def check_name(name: str, what: str) -> None:
    """Reject names that would change the group hierarchy (a '/' would nest groups)."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid {what} name {name!r}: must be non-empty and contain no '/'")


def write_version(
    path: Path,
    *,
    version: int,
    parent: int,
    created: str,
    reason: str,
    provenance: Mapping[str, str],
    parameters: Mapping[str, Mapping[str, CalibratedParameter]],
    experiments: Mapping[str, Mapping[str, ExperimentRecord]],
    station: Mapping[str, Any],
    settings: Mapping[str, Any],
    code_version: Mapping[str, Any],
) -> str:
    """Write a complete version file at `path` and return its content checksum.

    Metadata goes in first with h5py, raw data is added by xarray through the same handle so
    it is a genuine netCDF4 group, and the checksum is computed last from what h5py reads
    back, so the stored checksum describes exactly the bytes a reader will see. Parameters
    are checked first: the store never writes a file it would refuse to read.
    """
    check.check_version_number(version, parent)
    for qubit, params in parameters.items():
        check_name(qubit, "qubit")
        for name, p in params.items():
            check_name(name, "parameter")
            check.check_parameter(qubit, name, p)
    with h5py.File(path, "w", libver=_LIBVER) as f:
        attrs = f.attrs
        attrs["format"] = FORMAT
        attrs["format_version"] = FORMAT_VERSION
        attrs["version"] = version
        attrs["parent"] = parent
        attrs["created"] = created
        attrs["reason"] = reason
        attrs["provenance"] = json.dumps(dict(provenance), sort_keys=True)
        attrs["fluxcal_version"] = fluxcal.__version__
        attrs["code_version"] = json.dumps(dict(code_version), sort_keys=True)
        f.create_dataset("station", data=json.dumps(dict(station), default=_json_default))
        # A dataset, not an attribute: resolved settings grow with the qubits past the 64 kB
        # an HDF5 attribute holds.
        f.create_dataset("settings", data=json.dumps(dict(settings)))
        qubits = f.create_group("qubits")
        for qubit, params in parameters.items():
            for name, p in params.items():
                _write_value_group(qubits, f"{qubit}/parameters/{name}", p.value, p.stderr)
                g = qubits[f"{qubit}/parameters/{name}"]
                g.attrs["unit"] = p.unit
                g.attrs["experiment"] = p.experiment
                g.attrs["updated"] = p.updated
        for qubit, records in experiments.items():
            check_name(qubit, "qubit")
            for name, rec in records.items():
                check_name(name, "experiment")
                g = qubits.create_group(f"{qubit}/experiments/{name}")
                g.attrs["outcome"] = rec.outcome
                g.attrs["reason"] = rec.reason
                g.attrs["report"] = rec.report
                g.attrs["updated"] = rec.updated
                g.attrs["device_seconds"] = float(rec.device_seconds)
                fit = g.create_group("fit")
                for key, (value, stderr) in rec.fit.items():
                    check_name(key, "fit parameter")
                    _write_value_group(fit, key, value, stderr)
        _write_data(f, experiments)
        checksum = content_checksum(f)
        f.attrs["checksum"] = checksum
    return checksum


def _write_data(f: h5py.File, experiments: Mapping[str, Mapping[str, ExperimentRecord]]) -> None:
    """Each record's raw data as a netCDF4 group, packed (see `packing`) and compressed.

    Written through the open handle rather than `to_netcdf(path, mode="a")`: HDF5 does not
    keep `libver` in the file, and an append from a second open would index every chunked
    variable with a ~3 kB version-1 B-tree again.
    """
    import h5netcdf
    from xarray.backends.h5netcdf_ import H5NetCDFStore

    from .packing import pack

    with h5netcdf.File(f, "a") as nc:
        for qubit, records in experiments.items():
            for name, rec in records.items():
                if rec.data is not None:
                    data = pack(rec.data)
                    store = H5NetCDFStore(nc, group=experiment_group(qubit, name), mode="a")
                    data.dump_to_store(store, encoding=compressed(data))


def experiment_group(qubit: str, experiment: str) -> str:
    """Group path of an experiment's raw data, as passed to xarray.open_dataset(group=...)."""
    return f"qubits/{qubit}/experiments/{experiment}/{DATA_GROUP}"


def compressed(data: xarray.Dataset) -> dict[str, dict[str, Any]]:
    """xarray encoding that gzips every numeric array (shuffle first: it groups the bytes of
    equal significance, which is what makes float data compress at all)."""
    encoding = {}
    for name, var in data.variables.items():
        if var.ndim == 0 or var.size == 0 or var.dtype.kind not in "biufc":
            continue
        enc: dict[str, Any] = {
            "compression": "gzip",
            "compression_opts": _GZIP_LEVEL,
            "shuffle": True,
        }
        if var.size * var.dtype.itemsize <= _ONE_CHUNK_BYTES:
            enc["chunksizes"] = var.shape
        encoding[str(name)] = enc
    return encoding


def read_version(path: Path) -> Snapshot:
    """Open, check and decode one version file; any failure becomes DamagedSnapshot.

    The format is checked before the checksum so a file from a newer fluxcal says so instead
    of "checksum mismatch"; links and external storage are refused before anything follows
    them. Exceptions are caught broadly on purpose: libhdf5 reports a damaged file through
    whatever exception type h5py maps its error stack to (OSError, RuntimeError, KeyError,
    TypeError, ...), and at this boundary each of them means the same thing.

    Bytes this process has decoded before are not decoded again (`decoded`); the file is
    hashed again after decoding, so only a snapshot of the bytes that were hashed is kept.
    """
    digest = None
    try:
        kind = irregular_kind(path)
        if kind is not None:
            raise DamagedSnapshot(f"{path.name} is {kind}, not a version file")
        digest = _sha256_or_none(path)
        known = decoded.recall(digest, path) if digest is not None else None
        if known is not None:
            return known
        with h5py.File(path, "r") as f:
            snapshot = _decode(f, path)
    except DamagedSnapshot:
        raise
    except Exception as exc:
        raise DamagedSnapshot(f"{path.name} is damaged: {_one_line(exc)}") from exc
    if digest is not None and _sha256_or_none(path) == digest:
        decoded.remember(digest, snapshot)
    return snapshot


def _sha256_or_none(path: Path) -> str | None:
    """The file's sha256, or None where it cannot be read so (the HDF5 open then reports
    the problem as it always did)."""
    try:
        return file_sha256(path)
    except OSError:
        return None


def _decode(f: h5py.File, path: Path) -> Snapshot:
    attrs = f.attrs
    check.check_format(attrs)
    check.check_objects(f)
    stored = check.text(attrs, "checksum")
    if content_checksum(f) != stored:
        raise DamagedSnapshot(f"{path.name} is damaged: content checksum mismatch")
    version, parent = check.integer(attrs, "version"), check.integer(attrs, "parent")
    check.check_version_number(version, parent)
    created = check.text(attrs, "created")
    datetime.fromisoformat(created)
    parameters: dict[str, dict[str, CalibratedParameter]] = {}
    experiment_names: dict[str, list[str]] = {}
    for qubit in check.group(f, "qubits"):
        qgroup = check.group(f["qubits"], qubit)
        if "parameters" in qgroup:
            parameters[qubit] = {}
            for name in check.group(qgroup, "parameters"):
                p = _parameter(check.group(qgroup["parameters"], name).attrs)
                check.check_parameter(qubit, name, p)
                parameters[qubit][name] = p
        if "experiments" in qgroup:
            experiment_names[qubit] = list(check.group(qgroup, "experiments"))
    return Snapshot(
        version=version,
        parent=parent,
        created=created,
        reason=check.text(attrs, "reason"),
        provenance=check.json_object(check.text(attrs, "provenance"), "provenance"),
        fluxcal_version=check.text(attrs, "fluxcal_version"),
        checksum=stored,
        parameters=parameters,
        station=check.json_object(check.text_dataset(f, "station"), "station"),
        path=path,
        experiment_names=experiment_names,
        settings=(
            check.json_object(check.text_dataset(f, "settings"), "settings")
            if "settings" in f
            else {}
        ),
        code_version=(
            check.json_object(check.text(attrs, "code_version"), "code_version")
            if "code_version" in attrs
            else {}
        ),
    )


def read_experiments(path: Path, qubit: str, raw: bool = True) -> dict[str, ExperimentRecord]:
    """All experiment records of one qubit, with raw data loaded through xarray.

    Called on a file `read_version` accepted, but the raw data is read only now, so the same
    broad catch applies (see read_version).
    """
    records: dict[str, ExperimentRecord] = {}
    try:
        kind = irregular_kind(path)
        if kind is not None:
            raise DamagedSnapshot(f"{path.name} is {kind}, not a version file")
        with h5py.File(path, "r") as f:
            groups = check.group(f, f"qubits/{qubit}/experiments")
            meta = {}
            for name in groups:
                g = check.group(groups, name)
                fit = check.group(g, "fit")
                meta[name] = (
                    _record_attrs(g.attrs),
                    {k: _value_stderr(check.group(fit, k).attrs) for k in fit},
                    DATA_GROUP in g,
                )
        for name, (attrs, fit, has_data) in meta.items():
            data = None
            if has_data and raw:
                import xarray

                from .packing import unpack

                with xarray.open_dataset(
                    path, engine="h5netcdf", group=experiment_group(qubit, name)
                ) as ds:
                    data = unpack(ds.load())
            records[name] = ExperimentRecord(data=data, fit=fit, **attrs)
    except DamagedSnapshot:
        raise
    except Exception as exc:
        raise DamagedSnapshot(f"{path.name} is damaged: {_one_line(exc)}") from exc
    return records


def _record_attrs(attrs: h5py.AttributeManager) -> dict[str, Any]:
    return {
        "outcome": check.outcome(attrs),
        "reason": check.text(attrs, "reason"),
        "report": check.text(attrs, "report"),
        "updated": check.text(attrs, "updated"),
        # absent from snapshots written before device time was recorded
        "device_seconds": (
            check.real(attrs, "device_seconds") if "device_seconds" in attrs else math.nan
        ),
    }


def file_sha256(path: Path) -> str:
    """sha256 of the complete file bytes; the index keeps it to catch any byte change.

    Opened without following links or blocking, and refused unless a regular file, so a
    FIFO or link put in a version's place cannot hang or redirect the hash.
    """
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def content_checksum(f: h5py.File) -> str:
    """sha256 over a canonical serialisation of everything h5py reads from the file.

    Objects are visited in sorted path order. Each contributes its kind and path, its data
    (dtype, shape and raw bytes as read) and its attributes in sorted name order, except the
    root attribute `checksum` itself. Object references are replaced by the referenced path so
    the hash does not depend on file addresses. Every record is length-prefixed, so no two
    different contents serialise to the same byte stream.
    """
    h = hashlib.sha256()
    objects: list[tuple[str, Any]] = [("/", f)]
    f.visititems(lambda name, obj: objects.append(("/" + name, obj)))
    for name, obj in sorted(objects, key=lambda item: item[0]):
        if isinstance(obj, h5py.Dataset):
            _feed(h, b"D", name.encode())
            _feed(h, b"v", _canon(f, obj[()]))
        elif isinstance(obj, h5py.Datatype):
            _feed(h, b"T", name.encode())
            _feed(h, b"t", str(obj.dtype).encode())
        else:
            _feed(h, b"G", name.encode())
        for key in sorted(obj.attrs):
            if name == "/" and key == "checksum":
                continue
            _feed(h, b"a", key.encode())
            _feed(h, b"v", _canon(f, obj.attrs[key]))
    return "sha256:" + h.hexdigest()


def _feed(h: Any, tag: bytes, payload: bytes) -> None:
    h.update(tag + len(payload).to_bytes(8, "little") + payload)


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(8, "little") + payload


def _canon(f: h5py.File, value: Any) -> bytes:
    """Canonical bytes of one attribute or dataset value (see content_checksum)."""
    if isinstance(value, h5py.Reference):
        return b"r" + (f[value].name.encode() if value else b"")
    if isinstance(value, np.ndarray | np.generic):
        arr = np.asarray(value)
        head = str(arr.dtype.descr).encode() + str(arr.shape).encode()
        if arr.dtype.hasobject:
            items = arr.ravel().tolist()
            return b"o" + _frame(head) + b"".join(_frame(_canon(f, v)) for v in items)
        return b"n" + _frame(head) + np.ascontiguousarray(arr).tobytes()
    if isinstance(value, str):
        return b"s" + value.encode()
    if isinstance(value, bytes):
        return b"b" + value
    if isinstance(value, h5py.Empty):
        return b"e" + str(value.dtype).encode()
    if isinstance(value, bool | int | float):
        return b"p" + repr(value).encode()
    if isinstance(value, list | tuple):
        return b"l" + b"".join(_frame(_canon(f, v)) for v in value)
    raise TypeError(f"cannot checksum a value of type {type(value).__name__}")


def _write_value_group(parent: h5py.Group, name: str, value: float, stderr: float) -> None:
    g = parent.create_group(name)
    g.attrs["value"] = float(value)
    g.attrs["stderr"] = float(stderr)


def _value_stderr(attrs: h5py.AttributeManager) -> tuple[float, float]:
    return check.real(attrs, "value"), check.real(attrs, "stderr")


def _parameter(attrs: h5py.AttributeManager) -> CalibratedParameter:
    return CalibratedParameter(
        value=check.real(attrs, "value"),
        stderr=check.real(attrs, "stderr"),
        unit=check.text(attrs, "unit"),
        experiment=check.text(attrs, "experiment"),
        updated=check.text(attrs, "updated"),
    )


def _json_default(obj: Any) -> Any:
    """QCoDeS snapshots may hold numpy values; anything else unknown is stored as text."""
    if isinstance(obj, np.ndarray | np.generic):
        return obj.tolist()
    return str(obj)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
