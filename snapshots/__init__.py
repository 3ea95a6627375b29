"""Versioned, crash-safe calibration snapshot store (one immutable HDF5 file per version)."""

from .errors import DamagedSnapshot, StoreError, UnknownVersion
from .layout import Snapshot, experiment_group
from .records import (
    CalibratedParameter,
    ExperimentRecord,
    ParameterChange,
    VerifyProblem,
    VersionInfo,
)
from .store import SnapshotStore

__all__ = [
    "CalibratedParameter",
    "DamagedSnapshot",
    "ExperimentRecord",
    "ParameterChange",
    "Snapshot",
    "SnapshotStore",
    "StoreError",
    "UnknownVersion",
    "VerifyProblem",
    "VersionInfo",
    "experiment_group",
]
