"""How a run's own results combine with the version that is current when it saves.

Two runs may overlap: both start from version N, the first saves N+1, the second saves later.
If the second stored everything it read at its start, it would put back N's values over what
the first had just accepted (a lost update). Instead the store merges the second run's own
results onto the version current at save time, parameter by parameter, and the parameter's
`updated` time decides: a value is never replaced by one measured earlier.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from .records import CalibratedParameter

Parameters = Mapping[str, Mapping[str, CalibratedParameter]]

#: `updated` that cannot be read as a time sorts before every real time.
_UNKNOWN = datetime.min.replace(tzinfo=UTC)


def merge_parameters(
    base: Parameters, changes: Parameters
) -> dict[str, dict[str, CalibratedParameter]]:
    """`base` with each parameter of `changes` that is at least as recent as the base's.

    Ties go to `changes` (a re-measurement in the same second is the newer decision).
    Parameters and qubits that only one side has are kept.
    """
    merged = {qubit: dict(params) for qubit, params in base.items()}
    for qubit, params in changes.items():
        target = merged.setdefault(qubit, {})
        for name, new in params.items():
            old = target.get(name)
            if old is None or updated_time(new) >= updated_time(old):
                target[name] = new
    return merged


def updated_time(p: CalibratedParameter) -> datetime:
    """When a parameter was measured; unknown or unreadable times count as oldest."""
    try:
        when = datetime.fromisoformat(p.updated)
    except (TypeError, ValueError):
        return _UNKNOWN
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
