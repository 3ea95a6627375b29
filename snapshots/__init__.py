"""Versioned, crash-safe calibration snapshot store (one immutable HDF5 file per version)."""

from .errors import DamagedSnapshot, StoreError, StoreWarning, UnknownVersion
from .layout import Snapshot, experiment_group
from .merge import merge_parameters
from .records import (
    CalibratedParameter,
    ExperimentRecord,
    ParameterChange,
    VerifyProblem,
    VersionInfo,
)
from .store import Baseline, SnapshotStore

__all__ = [
    "Baseline",
    "CalibratedParameter",
    "DamagedSnapshot",
    "ExperimentRecord",
    "ParameterChange",
    "Snapshot",
    "SnapshotStore",
    "StoreError",
    "StoreWarning",
    "UnknownVersion",
    "VerifyProblem",
    "VersionInfo",
    "experiment_group",
    "merge_parameters",
]
