"""How raw data is packed into a version file, and unpacked on the way back.

Measured noise is what makes raw data big: the low mantissa bits of every float are random,
so no lossless filter compresses them. Two packings keep only the bits the noise leaves
meaningful, and each packed variable records in its attribute `fluxcal_dtype` the dtype it
had in memory, which `unpack` restores (the attribute is removed again), so analyses read
back what they would have seen live:

- **Single shots** (a complex variable with a dimension named `shot` or `*_shot`) become
  integer I and Q counts, the way digitisers deliver them: dtype int16 (int32 if the counts
  need it), one trailing dimension `iq_component` (0 = I, 1 = Q), value = count ×
  `scale_factor` (the CF packing attribute, so generic netCDF readers unpack the scale
  themselves). The step is 1/64 of the narrowest shot noise σ estimated from the data:
  rounding adds rms step/√12 = σ/222 per component, a variance change of 2e-5 σ², and moves a
  mean over N shots by ~σ/(222 √N), far below its own σ/√N error; where that would need
  int32 counts the step coarsens to at most σ/8 to stay in int16. Shots that give no noise
  estimate (fewer than two, or a setting repeating one value, as coarse ADC counts may), that
  are not finite, or whose counts would pass 2**23 (beyond which float32 cannot hold
  count × step to within step/2) are stored unchanged.
- **Averaged complex128 data variables** are stored as complex64: float32 resolves 6e-8 of the
  value, far below the noise left after any averaging a calibration does. Real data variables
  and coordinates stay as they are: in fluxcal they are settings and sweep values (e.g. the
  drive amplitude of each spectroscopy row), which must stay exact, and are small.

Re-saving data read back (a rollback) packs it to the same bytes: `unpack` keeps the step in
the variable's encoding and `pack` reuses it when it reproduces the values exactly.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

import numpy as np
import xarray as xr

#: Attribute of a packed variable: the dtype it had before packing (and gets back on reading).
DTYPE_ATTR = "fluxcal_dtype"
#: Trailing dimension of packed shots: index 0 is I, 1 is Q.
IQ_DIM = "iq_component"
#: CF attribute holding the step of packed shots (a value is count × step).
STEP_ATTR = "scale_factor"
#: Encoding key under which `unpack` keeps the step, for `pack` to reuse.
STEP_ENCODING = "fluxcal_step"
#: Quantisation step as a fraction of the narrowest shot noise.
STEPS_PER_SIGMA = 64
#: Coarsest step, as a fraction of the narrowest shot noise, taken to keep counts in int16.
MIN_STEPS_PER_SIGMA = 8
#: Largest count stored: float32 holds count × step to within step/2 up to here.
MAX_COUNT = 2**23
#: The 25th percentile of |x1 - x2| for x1, x2 ~ N(μ, σ²) is this times σ: √2 Φ⁻¹(0.625).
_QUARTILE_OF_DIFFERENCE = math.sqrt(2) * 0.318639


def is_shot_dim(name: Hashable) -> bool:
    """Single-shot dimensions are named `shot` or `<stage>_shot` (see calibrations.session)."""
    return isinstance(name, str) and (name == "shot" or name.endswith("_shot"))


def pack(data: xr.Dataset) -> xr.Dataset:
    """The Dataset to write: shots as integer counts, averaged complex data as complex64."""
    packed = {}
    for name, var in data.data_vars.items():
        if var.dtype.kind != "c":
            continue
        if any(is_shot_dim(d) for d in var.dims):
            counts = None if IQ_DIM in data.dims else _shot_counts(var.variable)
            if counts is not None:
                packed[name] = counts
        elif var.dtype == np.complex128:
            narrow = var.variable.astype(np.complex64)
            narrow.attrs = {**var.attrs, DTYPE_ATTR: str(var.dtype)}
            packed[name] = narrow
    return data.assign(packed) if packed else data


def unpack(data: xr.Dataset) -> xr.Dataset:
    """Undo `pack` on a Dataset read back (xarray has already applied `scale_factor`)."""
    restored = {}
    for name, var in data.data_vars.items():
        if DTYPE_ATTR not in var.attrs:
            continue
        attrs = {k: v for k, v in var.attrs.items() if k != DTYPE_ATTR}
        dtype = np.dtype(var.attrs[DTYPE_ATTR])
        if IQ_DIM in var.dims:
            iq = var.isel({IQ_DIM: 0}) + 1j * var.isel({IQ_DIM: 1})
            value = xr.Variable(iq.dims, iq.values.astype(dtype), attrs)
            value.encoding = {STEP_ENCODING: float(var.encoding[STEP_ATTR])}
        else:
            value = xr.Variable(var.dims, var.values.astype(dtype), attrs)
        restored[name] = value
    return data.assign(restored) if restored else data


def shot_step(values: np.ndarray, axis: int) -> float:
    """Quantisation step for shots along `axis`: the narrowest per-setting noise σ / 64.

    σ of each setting (every index but the shot axis) and component is estimated from the
    25th percentile of |consecutive differences|: it lies between σ and ~2σ of the narrower
    state's blob as long as at most half the pairs straddle two blobs, which a thermal or
    decayed population never exceeds. Returns nan when there is no estimate (fewer than two
    shots) and 0 when a setting repeats one value in a quarter of its consecutive shots.
    """
    shots = np.moveaxis(values, axis, -1)
    if shots.shape[-1] < 2 or shots.size == 0:
        return math.nan
    parts = np.stack([shots.real, shots.imag]).reshape(-1, shots.shape[-1])
    quartiles = np.quantile(np.abs(np.diff(parts, axis=-1)), 0.25, axis=-1)
    return float(quartiles.min()) / _QUARTILE_OF_DIFFERENCE / STEPS_PER_SIGMA


def _shot_counts(var: xr.Variable) -> xr.Variable | None:
    """Shots as integer counts with their step, or None to store them unchanged."""
    values = var.values
    if not np.isfinite(values).all():
        return None
    parts = np.stack([values.real, values.imag], axis=-1).astype(np.float64)
    step = var.encoding.get(STEP_ENCODING)
    if step is None or not _reproduces(parts, step, np.finfo(var.dtype).dtype):
        axis = max(i for i, d in enumerate(var.dims) if is_shot_dim(d))
        step = _within_int16(shot_step(values, axis), parts)
    if not (math.isfinite(step) and step > 0):
        return None
    counts = np.rint(parts / step)
    largest = np.abs(counts).max(initial=0.0)
    if largest > MAX_COUNT:
        return None
    dtype = np.int16 if largest <= np.iinfo(np.int16).max else np.int32
    attrs = {**var.attrs, DTYPE_ATTR: str(var.dtype), STEP_ATTR: np.float64(step)}
    return xr.Variable((*var.dims, IQ_DIM), counts.astype(dtype), attrs)


def _within_int16(step: float, parts: np.ndarray) -> float:
    """`step`, or the coarser step that keeps the counts within int16 while it still
    resolves the narrowest noise in `MIN_STEPS_PER_SIGMA` steps.

    One step serves a whole variable, set by its narrowest noise; a grid of integration
    times from 50 ns to T1 (readout optimisation on a long-lived qubit) spans √(T1/50 ns)
    in noise, and its loudest settings then need int32 counts, twice the bytes, for a
    precision nothing reads: at 8 steps per σ rounding adds σ/28 rms, a variance change of
    1.3e-3 σ², and moves a mean over N shots by ~σ/(28 √N), still far below its own error.
    """
    if not (math.isfinite(step) and step > 0):
        return step
    needed = float(np.abs(parts).max(initial=0.0)) / np.iinfo(np.int16).max
    limit = step * STEPS_PER_SIGMA / MIN_STEPS_PER_SIGMA
    return needed if step < needed <= limit else step


def _reproduces(parts: np.ndarray, step: float, component: np.dtype) -> bool:
    """Whether counts of `step` read back as exactly these values (data read from a file)."""
    return bool(np.array_equal((np.rint(parts / step) * step).astype(component), parts))
