"""How a run's own results combine with the version that is current when it saves.

Two runs may overlap: both start from version N, the first saves N+1, the second saves later.
If the second stored everything it read at its start, it would put back N's values over what
the first had just accepted (a lost update). Instead the store merges the second run's own
results onto the version current at save time, parameter by parameter, and the parameter's
`updated` time decides: a value is never replaced by one measured earlier.

A run's accepted result that loses to a later stamp is not lost silently: `superseded` names
each one, so the store can warn (an overlapping run measured later, or a stored stamp from a
clock that runs ahead of this one).
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


def superseded(base: Parameters, changes: Parameters, now: datetime | None = None) -> list[str]:
    """One line per parameter of `changes` that the merge drops for a later stored stamp.

    A stored stamp later than `now` cannot come from a measurement; it is named as clock skew
    or an imported value, the case in which an accepted recalibration would otherwise vanish.
    """
    now = now or datetime.now(UTC)
    lines = []
    for qubit, params in changes.items():
        for name, new in params.items():
            old = base.get(qubit, {}).get(name)
            if old is None or updated_time(new) >= updated_time(old):
                continue
            why = (
                "stamped in the future: clock skew or an imported value?"
                if (updated_time(old) > now)
                else "measured later by another run"
            )
            lines.append(
                f"{qubit}.{name} measured {new.updated} not saved: the stored value "
                f"(updated {old.updated}) is {why}"
            )
    return lines


def updated_time(p: CalibratedParameter) -> datetime:
    """When a parameter was measured; unknown or unreadable times count as oldest."""
    try:
        when = datetime.fromisoformat(p.updated)
    except (TypeError, ValueError):
        return _UNKNOWN
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
