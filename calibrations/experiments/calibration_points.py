"""|0⟩ and |1⟩ calibration points: recognised in a recorded trace, used to scale it to population.

Other stacks (quantify-core, qibocal) append two reference points to a time-domain trace: the
readout of the qubit left in |0⟩ and of the qubit after a π pulse, |1⟩ (quantify-core puts them
last, in that order, on a sweep axis that just continues). With them the signal becomes the
excited population: the axis from |0⟩ to |1⟩ is the projection, their separation the full
contrast, so a fitted amplitude can be compared with what a perfect pulse would give.

Nothing in the file says "these are calibration points", so `detect` recognises them from the
geometry, as a person looking at the IQ plane would: the last two points jump far from the
trace's own steps, the trace lies along the segment between them, and within it.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from fluxcal.calibrations.fitting import FitError

#: Variable holding the reference points, over `STATE` = [0, 1].
CALIBRATION = "iq_calibration"
STATE = "calibration_state"
#: Sweep axes of the time-domain experiments, the traces that may carry calibration points.
TIME_DOMAIN_AXES = ("delay", "drive_amplitude", "drive_duration")

#: The |0⟩–|1⟩ separation must exceed this many times the trace's 90th-percentile step:
#: a jump, not the trace continuing (two noise points of one trace exceed it with p ≈ 1e-6).
_JUMP = 3.0
#: Mean distance of the trace from the |0⟩–|1⟩ line, in units of their separation, below
#: which the trace lies along it; and how far outside [0, 1] a point may sit (noise).
_OFF_LINE = 0.25
_OUTSIDE = 0.25
#: Fraction of the trace that must lie between the references.
_INSIDE_FRACTION = 0.9
#: Fewest points of the trace itself for the geometry to mean anything.
_MIN_TRACE = 8


def detect(iq: np.ndarray) -> bool:
    """Whether the last two points of one complex trace are its |0⟩ and |1⟩ references."""
    iq = np.asarray(iq, complex)
    if iq.ndim != 1 or iq.size < _MIN_TRACE + 2 or not np.all(np.isfinite(iq)):
        return False
    zero, one, trace = iq[-2], iq[-1], iq[:-2]
    separation = abs(one - zero)
    if not separation > _JUMP * np.percentile(np.abs(np.diff(trace)), 90):
        return False
    scaled = (trace - zero) * np.conj(one - zero) / separation**2
    inside = (scaled.real >= -_OUTSIDE) & (scaled.real <= 1 + _OUTSIDE)
    return bool(np.mean(np.abs(scaled.imag)) < _OFF_LINE and np.mean(inside) >= _INSIDE_FRACTION)


def split(dataset: xr.Dataset) -> xr.Dataset:
    """A single time-domain trace with its last two points moved to `CALIBRATION` when they
    are calibration points; any other Dataset unchanged."""
    if CALIBRATION in dataset or "iq" not in dataset or dataset["iq"].ndim != 1:
        return dataset
    (sweep,) = dataset["iq"].dims
    if sweep not in TIME_DOMAIN_AXES or not detect(dataset["iq"].values):
        return dataset
    trace = dataset.isel({sweep: slice(None, -2)})
    references = dataset["iq"].values[-2:]
    result = trace.assign({CALIBRATION: (STATE, references)}).assign_coords({STATE: [0, 1]})
    result[CALIBRATION].attrs = dict(dataset["iq"].attrs)
    result.attrs["calibration_points"] = "last two points of the trace: |0⟩ then |1⟩"
    return result


def references(data: xr.Dataset) -> tuple[complex, complex] | None:
    """The |0⟩ and |1⟩ reference signals of a Dataset, or None when it has none."""
    if CALIBRATION not in data:
        return None
    values = data[CALIBRATION].sel({STATE: [0, 1]}).values
    return complex(values[0]), complex(values[1])


def population(iq: np.ndarray, zero: complex, one: complex) -> np.ndarray:
    """Excited population: the signal projected on the |0⟩ → |1⟩ axis, 0 at |0⟩, 1 at |1⟩."""
    axis = one - zero
    if axis == 0:
        raise FitError("the |0⟩ and |1⟩ calibration points coincide: no contrast")
    return ((np.asarray(iq, complex) - zero) * np.conj(axis)).real / abs(axis) ** 2
