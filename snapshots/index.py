"""The version index (index.json): a cache of every version's metadata and parameters.

It exists so `list`, `diff` and `history` over thousands of versions read one JSON file
instead of opening every HDF5 file. The version files are the truth: the index can always be
rebuilt from them, and the store extends it whenever files appear that it does not list.

Because `history` and `diff` print values straight from the index, each entry carries a
digest of its own content (and its version number): an entry edited by hand, damaged on disk
or moved to another version fails its digest and is re-derived from its file, so the index
never shows a value the files do not hold. `verify` additionally compares every entry with
its file field by field.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .fsio import atomic_write_text, read_regular
from .layout import Snapshot
from .records import CalibratedParameter, VersionInfo
from .validate import MAX_VERSION

INDEX_NAME = "index.json"
INDEX_FORMAT = "fluxcal-snapshot-index"
#: 2 added the per-entry digest; an index of version 1 is rebuilt from the files.
INDEX_FORMAT_VERSION = 2
#: An index this large would take seconds to parse; past it the file is damage, not data.
MAX_INDEX_BYTES = 256 << 20

_FIELDS = {
    "parent": int,
    "created": str,
    "reason": str,
    "provenance": dict,
    "fluxcal_version": str,
    "checksum": str,
    "file_sha256": str,
    "parameters": dict,
    "digest": str,
}


def empty_index() -> dict[str, Any]:
    """`versions` maps str(version) -> entry; `damaged` maps str(version) -> why it was skipped."""
    return {
        "format": INDEX_FORMAT,
        "format_version": INDEX_FORMAT_VERSION,
        "versions": {},
        "damaged": {},
    }


def read_index(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse an index file and drop every entry that fails its digest or its schema.

    Returns the index and, per dropped table key, one line saying why (the caller
    re-derives those versions from their files and says so). Raises OSError or ValueError
    when the file as a whole is missing or unusable; the caller then rebuilds it.
    """
    raw = read_regular(path, MAX_INDEX_BYTES)
    try:
        index = json.loads(raw.decode("utf-8"))
    except RecursionError as exc:
        raise ValueError(f"{path.name} is nested too deeply") from exc
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise ValueError(f"{path.name} is not a fluxcal snapshot index")
    if index.get("format_version") != INDEX_FORMAT_VERSION:
        raise ValueError(f"{path.name} has index format {index.get('format_version')!r}")
    versions, damaged = index.get("versions"), index.get("damaged")
    if not isinstance(versions, dict) or not isinstance(damaged, dict):
        raise ValueError(f"{path.name} has no versions table")
    dropped = {}
    for key in list(versions):
        problem = entry_problem(key, versions[key])
        if problem is not None:
            dropped[key] = f"{path.name}: {problem}"
            del versions[key]
    for key in list(damaged):
        if version_key(key) is None or not isinstance(damaged[key], str):
            dropped[key] = f"{path.name}: malformed damaged-file record {key[:40]!r}"
            del damaged[key]
    return index, dropped


def write_index(path: Path, index: Mapping[str, Any]) -> None:
    # Compact JSON: the file is rewritten on every save, so size is time.
    atomic_write_text(path, json.dumps(index, separators=(",", ":")))


def make_entry(
    *,
    version: int,
    parent: int,
    created: str,
    reason: str,
    provenance: Mapping[str, Any],
    fluxcal_version: str,
    checksum: str,
    file_sha256: str,
    parameters: Mapping[str, Mapping[str, CalibratedParameter]],
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "parent": parent,
        "created": created,
        "reason": reason,
        "provenance": dict(provenance),
        "fluxcal_version": fluxcal_version,
        "checksum": checksum,
        "file_sha256": file_sha256,
        "parameters": {
            qubit: {
                name: [float(p.value), float(p.stderr), p.unit, p.experiment, p.updated]
                for name, p in params.items()
            }
            for qubit, params in parameters.items()
        },
    }
    entry["digest"] = _digest(version, entry)
    return entry


def entry_from_snapshot(snap: Snapshot, file_sha256: str) -> dict[str, Any]:
    return make_entry(
        version=snap.version,
        parent=snap.parent,
        created=snap.created,
        reason=snap.reason,
        provenance=snap.provenance,
        fluxcal_version=snap.fluxcal_version,
        checksum=snap.checksum,
        file_sha256=file_sha256,
        parameters=snap.parameters,
    )


def same_entry(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Field-by-field equality, counting nan == nan (as their JSON text does)."""
    return _canonical(a) == _canonical(b)


def entry_problem(key: str, entry: Any) -> str | None:
    """Why an index entry cannot be trusted, or None: schema first, then its digest."""
    version = version_key(key)
    if version is None:
        return f"entry key {key[:40]!r} is not a version number"
    if not isinstance(entry, dict) or set(entry) != set(_FIELDS):
        return f"entry of v{version} does not have the index fields"
    for name, kind in _FIELDS.items():
        if not isinstance(entry[name], kind) or isinstance(entry[name], bool):
            return f"entry of v{version} has a malformed {name}"
    for params in entry["parameters"].values():
        if not isinstance(params, dict) or not all(_is_row(r) for r in params.values()):
            return f"entry of v{version} has a malformed parameter"
    if entry["digest"] != _digest(version, entry):
        return f"entry of v{version} does not match its digest (edited or damaged)"
    return None


def version_info(version: int, entry: Mapping[str, Any]) -> VersionInfo:
    return VersionInfo(
        version=version,
        parent=entry["parent"],
        created=entry["created"],
        reason=entry["reason"],
        provenance=dict(entry["provenance"]),
        fluxcal_version=entry["fluxcal_version"],
        checksum=entry["checksum"],
    )


def entry_parameter(entry: Mapping[str, Any], qubit: str, name: str) -> CalibratedParameter | None:
    row = entry["parameters"].get(qubit, {}).get(name)
    if row is None:
        return None
    value, stderr, unit, experiment, updated = row
    return CalibratedParameter(float(value), float(stderr), unit, experiment, updated)


def entry_parameters(entry: Mapping[str, Any]) -> dict[tuple[str, str], CalibratedParameter]:
    return {
        (qubit, name): CalibratedParameter(float(v), float(s), unit, exp, updated)
        for qubit, params in entry["parameters"].items()
        for name, (v, s, unit, exp, updated) in params.items()
    }


def significance(delta: float, old: CalibratedParameter, new: CalibratedParameter) -> float:
    """delta in units of the combined standard error; nan when that is unknown or zero."""
    combined = math.hypot(old.stderr, new.stderr)
    if math.isnan(combined) or combined == 0.0:
        return math.nan
    return delta / combined


def _digest(version: int, entry: Mapping[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "digest"}
    text = f"{version}\n{_canonical(body)}"
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def version_key(key: str) -> int | None:
    """The version a table key names, if it is a canonical decimal number in range."""
    if not key.isdigit() or not key.isascii() or str(int(key)) != key:
        return None
    version = int(key)
    return version if 1 <= version <= MAX_VERSION else None


def _is_row(row: Any) -> bool:
    return (
        isinstance(row, list)
        and len(row) == 5
        and all(isinstance(x, float | int) and not isinstance(x, bool) for x in row[:2])
        and all(isinstance(x, str) for x in row[2:])
    )
