"""Plain value types exchanged with the rest of fluxcal.

They carry no storage logic so calibration nodes can build them without touching HDF5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # xarray costs ~0.2 s to import; listing a store needs none of it
    import xarray

OUTCOMES = ("accepted", "rejected", "failed", "skipped")


@dataclass(frozen=True)
class CalibratedParameter:
    """One calibrated quantity, in SI units, with where and when it was measured."""

    value: float
    stderr: float  # nan when unknown
    unit: str
    experiment: str
    updated: str  # ISO 8601 UTC


@dataclass
class ExperimentRecord:
    """Raw data, fit and gate decision of one experiment run, kept for audit and re-analysis."""

    data: xarray.Dataset | None
    fit: dict[str, tuple[float, float]]  # fit parameter -> (value, stderr)
    outcome: str  # one of OUTCOMES
    reason: str
    report: str = ""
    updated: str = ""
    device_seconds: float = math.nan  # device time the acquisition used (NaN: not recorded)

    def __post_init__(self) -> None:
        # Checked here so a bad outcome fails at the node that produced it, not at save time.
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")


@dataclass(frozen=True)
class VersionInfo:
    """Index entry of one version: what `list` shows without opening the file."""

    version: int
    parent: int
    created: str
    reason: str
    provenance: dict[str, str] = field(default_factory=dict)
    fluxcal_version: str = ""
    checksum: str = ""


@dataclass(frozen=True)
class ParameterChange:
    """One line of a diff between two versions.

    `kind` is "changed", "added" or "removed"; `delta` and `delta_sigma` are nan unless both
    sides exist. `delta_sigma` is delta / sqrt(stderr_old² + stderr_new²): how many combined
    standard errors the parameter moved, i.e. whether the change is significant.
    """

    qubit: str
    name: str
    old: CalibratedParameter | None
    new: CalibratedParameter | None
    delta: float
    delta_sigma: float
    unit: str
    kind: str


@dataclass(frozen=True)
class VerifyProblem:
    """One finding of `verify`: kind is "damaged", "pointer" or "index"."""

    kind: str
    version: int | None
    path: str
    message: str
