"""What a version file may contain, checked on every read and, for parameters, before writing.

A checksum only proves that a file is unchanged since someone computed the checksum; a file
forged with valid HDF5 and a recomputed checksum (or written by a buggy tool) still has to be
refused before its values reach a calibration. The rules here are the layout contract of
docs/snapshots.md made executable: every object reached by a hard link inside the file, every
attribute of the expected type, parameter values finite and of a size a qubit can have.
Each check raises ValueError with a short cause; the reader turns it into DamagedSnapshot.
"""

from __future__ import annotations

import json
import math
from typing import Any

import h5py
import numpy as np

from .records import OUTCOMES, CalibratedParameter

FORMAT = "fluxcal-snapshot"
#: 2: single shots packed as integer counts with a `scale_factor` (`snapshots.packing`);
#: a reader of format 1 would take them for real arrays, so it must refuse the file.
FORMAT_VERSION = 2
#: Format versions this code reads: format 1 files (raw data unpacked) read as before.
READABLE_FORMAT_VERSIONS = (1, 2)
#: Version numbers stay below this so names, ints and JSON keys never overflow anything.
MAX_VERSION = 999_999_999
#: Largest |value| or stderr of a calibrated parameter. SI quantities of a qubit top out near
#: 1e10 (frequencies in Hz); anything past 1e18 is a forgery or a unit bug, not a measurement.
MAX_MAGNITUDE = 1e18
#: Largest dataset a reader will materialise; a forged shape must not exhaust memory.
MAX_DATASET_BYTES = 1 << 30


def check_parameter(qubit: str, name: str, p: CalibratedParameter) -> None:
    """A parameter the next calibration may start from: finite value, stderr nan or >= 0."""
    where = f"parameter {qubit}/{name}"
    if not _is_real(p.value) or not math.isfinite(p.value) or abs(p.value) > MAX_MAGNITUDE:
        raise ValueError(f"{where} has value {p.value!r}, not a finite number within ±1e18")
    if not _is_real(p.stderr) or not (math.isnan(p.stderr) or 0.0 <= p.stderr <= MAX_MAGNITUDE):
        raise ValueError(f"{where} has stderr {p.stderr!r}, not nan or a number in [0, 1e18]")
    for key in ("unit", "experiment", "updated"):
        if not isinstance(getattr(p, key), str):
            raise ValueError(f"{where} has a {key} that is not text")


def check_version_number(version: int, parent: int) -> None:
    if not 1 <= version <= MAX_VERSION:
        raise ValueError(f"version {version} is outside 1..{MAX_VERSION}")
    if not -1 <= parent < version:
        raise ValueError(f"parent {parent} is not -1 or an earlier version than {version}")


def check_objects(f: h5py.File) -> None:
    """Only hard links, and only data stored inside this file, in bounded amounts.

    Soft and external links could point anywhere (another file, outside the store); external
    and virtual datasets read their bytes from other files. None of them is written by the
    store, so any of them means the file was made or edited by something else.
    """
    problems: list[str] = []

    def link(name: str, info: Any) -> None:
        if not problems and not isinstance(info, h5py.HardLink):
            problems.append(f"{type(info).__name__} at /{name} (only hard links are allowed)")

    f.visititems_links(link)
    if problems:
        raise ValueError(problems[0])

    def storage(name: str, obj: Any) -> None:
        if problems or not isinstance(obj, h5py.Dataset):
            return
        if obj.external:
            problems.append(f"dataset /{name} keeps its data in an external file")
        elif obj.is_virtual:
            problems.append(f"dataset /{name} is a virtual dataset over other files")
        elif obj.size * obj.dtype.itemsize > MAX_DATASET_BYTES:
            problems.append(f"dataset /{name} declares {obj.size * obj.dtype.itemsize} bytes")

    f.visititems(storage)
    if problems:
        raise ValueError(problems[0])


def check_format(attrs: h5py.AttributeManager) -> None:
    """Refuse files of another format or of a format version this code cannot read."""
    if attrs.get("format") != FORMAT:
        raise ValueError("not a fluxcal snapshot file")
    found = integer(attrs, "format_version")
    if found not in READABLE_FORMAT_VERSIONS:
        readable = " and ".join(map(str, READABLE_FORMAT_VERSIONS))
        raise ValueError(f"unknown format_version {found} (this code reads {readable})")


def group(parent: h5py.Group, name: str) -> h5py.Group:
    """A member that must be a group (a dataset in its place is damage)."""
    obj = parent[name]
    if not isinstance(obj, h5py.Group):
        raise ValueError(f"{obj.name} is a {type(obj).__name__}, not a group")
    return obj


def text_dataset(f: h5py.File, name: str) -> str:
    obj = f[name]
    if not isinstance(obj, h5py.Dataset) or obj.shape != ():
        raise ValueError(f"/{name} is not a scalar string dataset")
    value = obj[()]
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, str):
        raise ValueError(f"/{name} is not a string")
    return value


def text(attrs: h5py.AttributeManager, key: str) -> str:
    value = attrs[key]
    if not isinstance(value, str):
        raise ValueError(f"attribute {key!r} is {type(value).__name__}, not text")
    return value


def integer(attrs: h5py.AttributeManager, key: str) -> int:
    value = attrs[key]
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ValueError(f"attribute {key!r} is {type(value).__name__}, not an integer")
    return int(value)


def real(attrs: h5py.AttributeManager, key: str) -> float:
    value = attrs[key]
    if not _is_real(value):
        raise ValueError(f"attribute {key!r} is {type(value).__name__}, not a number")
    return float(value)


def outcome(attrs: h5py.AttributeManager) -> str:
    value = text(attrs, "outcome")
    if value not in OUTCOMES:
        raise ValueError(f"unknown experiment outcome {value!r}")
    return value


def json_object(raw: str, what: str) -> dict[str, Any]:
    """Parse JSON that must be an object (provenance, code version, station, settings)."""
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise ValueError(f"{what} is nested too deeply") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{what} is {type(value).__name__} JSON, not an object")
    return value


def _is_real(value: Any) -> bool:
    return isinstance(value, float | int | np.floating | np.integer) and not isinstance(
        value, bool | np.bool_
    )
