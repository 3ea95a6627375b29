"""quantify-core datasets → the Dataset form fluxcal's analyses take.

quantify stores a measurement as an xarray Dataset in HDF5 (`dataset.hdf5`): settables `x0…`
and gettables `y0…` over one dimension `dim_0`, each with `units` and `long_name`, and a
`tuid` and free-text `name` in the attrs. The signal is magnitude (V) and phase (deg), or I
and Q (V); further gettables (quantify's timing `dt`) are not signal. The sweep carries no
fluxcal name, so the experiment chosen says which axis it is, and its unit must agree.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import xarray as xr

from fluxcal.calibrations.importers import AXIS_UNITS, DataImportError

#: fluxcal sweep axis of each experiment whose quantify traces are one settable.
EXPERIMENT_AXIS = {
    "t1": "delay",
    "echo": "delay",
    "ramsey": "delay",
    "rabi": "drive_amplitude",
    "resonator_search": "readout_frequency",
    "resonator_spectroscopy": "readout_frequency",
}
#: quantify names its time-domain datasets "<experiment> ... at 4.9969 GHz" (the drive).
_DRIVE_IN_NAME = re.compile(r"\bat\s*(\d+(?:\.(\d+))?)\s*GHz\b")


def is_quantify(dataset: xr.Dataset) -> bool:
    """quantify's layout: a `tuid` attr and settable `x0` and gettable `y0` variables."""
    return "tuid" in dataset.attrs and "x0" in dataset.variables and "y0" in dataset.variables


def from_quantify(dataset: xr.Dataset, path: str | Path, experiment: str) -> xr.Dataset:
    """`iq` over the experiment's sweep axis, with quantify's name and tuid in the attrs.

    The points keep quantify's order: calibration points are known by position (the last
    two, on sweep values that merely continue the grid), so the caller sorts after looking.
    """
    if experiment not in EXPERIMENT_AXIS:
        known = ", ".join(EXPERIMENT_AXIS)
        raise DataImportError(
            f"{path}: quantify datasets are read for {known}; not for {experiment}"
        )
    settables = sorted(name for name in dataset.variables if re.fullmatch(r"x\d+", str(name)))
    if settables != ["x0"]:
        raise DataImportError(
            f"{path}: {len(settables)} settables ({', '.join(settables)}); "
            f"{experiment} reads a trace over one"
        )
    axis = EXPERIMENT_AXIS[experiment]
    sweep = dataset["x0"]
    _check_unit(path, sweep, axis)
    signal = _signal(dataset, path)
    result = xr.Dataset(
        {"iq": (axis, signal)},
        coords={axis: np.asarray(sweep.values, float)},
        attrs={
            "source": str(path),
            "experiment": experiment,
            "quantify_tuid": str(dataset.attrs["tuid"]),
            "quantify_name": str(dataset.attrs.get("name", "")),
        },
    )
    result["iq"].attrs["units"] = str(dataset["y0"].attrs.get("units", ""))
    result[axis].attrs["units"] = str(sweep.attrs.get("units", ""))
    result.attrs.update(_drive_from_name(str(dataset.attrs.get("name", ""))))
    return result


def _check_unit(path: str | Path, sweep: xr.DataArray, axis: str) -> None:
    unit = str(sweep.attrs.get("units", ""))
    if unit != AXIS_UNITS[axis]:
        label = sweep.attrs.get("long_name", "x0")
        raise DataImportError(
            f"{path}: x0 ({label}) is in {unit or 'no unit'}; {axis} needs {AXIS_UNITS[axis]}"
        )


def _signal(dataset: xr.Dataset, path: str | Path) -> np.ndarray:
    """Complex signal from magnitude and phase (deg or rad), from I and Q, or real."""
    y0 = np.asarray(dataset["y0"].values, float)
    if "y1" not in dataset:
        return y0.astype(complex)
    y1 = dataset["y1"]
    unit = str(y1.attrs.get("units", ""))
    if unit in ("deg", "rad"):
        phase = np.deg2rad(y1.values) if unit == "deg" else np.asarray(y1.values, float)
        return y0 * np.exp(1j * phase)
    if unit == dataset["y0"].attrs.get("units"):
        return y0 + 1j * np.asarray(y1.values, float)
    raise DataImportError(
        f"{path}: y1 in {unit or 'no unit'} is neither a phase nor the quadrature of y0"
    )


def _drive_from_name(name: str) -> dict[str, float]:
    """The drive frequency a quantify dataset name states, with the resolution its digits
    give (a label "4.9969 GHz" is known to 100 kHz); nothing when the name states none."""
    match = _DRIVE_IN_NAME.search(name)
    if match is None:
        return {}
    decimals = len(match.group(2) or "")
    return {
        "drive_frequency": float(match.group(1)) * 1e9,
        "drive_frequency_resolution": 1e9 * 10.0**-decimals,
    }
