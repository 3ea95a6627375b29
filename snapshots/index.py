"""The version index (index.json): a cache of every version's metadata and parameters.

It exists so `list`, `diff` and `history` over thousands of versions read one JSON file
instead of opening every HDF5 file. The version files are the truth: the index can always be
rebuilt from them, and the store extends it whenever files appear that it does not list.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .fsio import atomic_write_text
from .layout import Snapshot
from .records import CalibratedParameter, VersionInfo

INDEX_NAME = "index.json"
INDEX_FORMAT = "fluxcal-snapshot-index"


def empty_index() -> dict[str, Any]:
    """`versions` maps str(version) -> entry; `damaged` maps str(version) -> why it was skipped."""
    return {"format": INDEX_FORMAT, "format_version": 1, "versions": {}, "damaged": {}}


def read_index(path: Path) -> dict[str, Any]:
    """Parse an index file; raises OSError or ValueError when missing or unusable."""
    with open(path, encoding="utf-8") as fh:
        index = json.load(fh)
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise ValueError(f"{path.name} is not a fluxcal snapshot index")
    if not isinstance(index.get("versions"), dict) or not isinstance(index.get("damaged"), dict):
        raise ValueError(f"{path.name} has no versions table")
    return index


def write_index(path: Path, index: Mapping[str, Any]) -> None:
    # Compact JSON: the file is rewritten on every save, so size is time.
    atomic_write_text(path, json.dumps(index, separators=(",", ":")))


def make_entry(
    *,
    parent: int,
    created: str,
    reason: str,
    provenance: Mapping[str, str],
    fluxcal_version: str,
    checksum: str,
    file_sha256: str,
    parameters: Mapping[str, Mapping[str, CalibratedParameter]],
) -> dict[str, Any]:
    return {
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


def entry_from_snapshot(snap: Snapshot, file_sha256: str) -> dict[str, Any]:
    return make_entry(
        parent=snap.parent,
        created=snap.created,
        reason=snap.reason,
        provenance=snap.provenance,
        fluxcal_version=snap.fluxcal_version,
        checksum=snap.checksum,
        file_sha256=file_sha256,
        parameters=snap.parameters,
    )


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
