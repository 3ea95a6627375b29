"""Recorded data → the Dataset form the analyses take from a live run.

Every analysis is a pure function of an xarray Dataset with a complex `iq` variable over
named sweep dimensions (`readout_frequency`, `flux_voltage`, `drive_frequency`, `delay`,
…) and its settings in `attrs`. These importers bring other sources into that form so a
fit can be re-run offline: fluxcal's own QCoDeS runs, netCDF/HDF5 files written by xarray
(including fluxcal snapshots), Touchstone files (via scikit-rf) and plain npz/CSV arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from calibrations.session import tidy

#: Units of the sweep dimensions fluxcal understands.
AXIS_UNITS = {
    "readout_frequency": "Hz",
    "drive_frequency": "Hz",
    "flux_voltage": "V",
    "drive_amplitude": "V",
    "drive_duration": "s",
    "delay": "s",
    "readout_amplitude": "V",
    "readout_duration": "s",
    "shot": "",
}


class DataImportError(ValueError):
    """A file that cannot be turned into an analysis Dataset; the message says why."""


def with_units(dataset: xr.Dataset) -> xr.Dataset:
    for name in dataset.dims:
        if name in AXIS_UNITS:
            dataset[name].attrs.setdefault("units", AXIS_UNITS[name])
    if "iq" in dataset:
        dataset["iq"].attrs.setdefault("units", "V")
    return dataset


def from_qcodes(database: str | Path, run_id: int) -> xr.Dataset:
    """A fluxcal measurement from a QCoDeS database, by run id."""
    from qcodes.dataset import load_by_run_spec
    from qcodes.dataset.sqlite.database import connect

    if not Path(database).is_file():
        raise DataImportError(f"{database}: no such QCoDeS database")
    connection = connect(str(database))
    try:
        run = load_by_run_spec(captured_run_id=run_id, conn=connection)
        return with_units(tidy(run.to_xarray_dataset()))
    except (NameError, ValueError) as error:
        raise DataImportError(f"{database}: run {run_id}: {error}") from None
    finally:
        connection.close()


def from_netcdf(path: str | Path, group: str | None = None) -> xr.Dataset:
    """A Dataset written by xarray (netCDF4/HDF5), e.g. a group of a fluxcal snapshot."""
    try:
        with xr.open_dataset(path, engine="h5netcdf", group=group) as opened:
            return with_units(opened.load())
    except (OSError, ValueError) as error:
        raise DataImportError(f"{path}: cannot read as xarray data ({error})") from None


def from_snapshot(path: str | Path, qubit: str, experiment: str) -> xr.Dataset:
    """The raw data one node stored in a snapshot version file."""
    from snapshots import experiment_group

    return from_netcdf(path, group=f"{experiment_group(qubit, experiment)}/data")


def from_touchstone(path: str | Path, port: tuple[int, int] = (1, 0)) -> xr.Dataset:
    """S-parameter trace (default S21) of a Touchstone file as `iq` over readout_frequency."""
    import skrf

    try:
        network = skrf.Network(str(path))
    except Exception as error:  # scikit-rf raises many types on malformed files
        raise DataImportError(f"{path}: not a readable Touchstone file ({error})") from None
    trace = network.s[:, port[0], port[1]]
    dataset = xr.Dataset(
        {"iq": ("readout_frequency", trace)},
        coords={"readout_frequency": network.f},
        attrs={"source": str(path), "experiment": "resonator_spectroscopy"},
    )
    return with_units(dataset)


def from_arrays(path: str | Path, axes: Mapping[str, str], data: str = "data") -> xr.Dataset:
    """npz (or CSV) arrays: `axes` maps each array name in the file to a fluxcal axis name.

    The data array's dimensions follow the order of `axes`. A CSV has one column per axis in
    long form plus the data column (real, or `<data>_re`/`<data>_im` for complex).
    """
    path = Path(path)
    if path.suffix == ".csv":
        return _from_csv(path, axes, data)
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataImportError(f"{path}: cannot read arrays ({error})") from None
    missing = [name for name in [*axes, data] if name not in arrays]
    if missing:
        raise DataImportError(f"{path}: missing array(s) {', '.join(missing)}; has {list(arrays)}")
    coords = {axes[name]: np.asarray(arrays[name]) for name in axes}
    values = np.asarray(arrays[data])
    shape = tuple(len(c) for c in coords.values())
    if values.shape != shape:
        raise DataImportError(f"{path}: {data} has shape {values.shape}, axes give {shape}")
    return with_units(
        xr.Dataset({"iq": (list(coords), values)}, coords=coords, attrs={"source": str(path)})
    )


def _from_csv(path: Path, axes: Mapping[str, str], data: str) -> xr.Dataset:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise DataImportError(f"{path}: cannot read CSV ({error})") from None
    if data in frame:
        values = frame[data].to_numpy()
    elif f"{data}_re" in frame and f"{data}_im" in frame:
        values = frame[f"{data}_re"].to_numpy() + 1j * frame[f"{data}_im"].to_numpy()
    else:
        raise DataImportError(f"{path}: no column {data} (or {data}_re/{data}_im)")
    missing = [name for name in axes if name not in frame]
    if missing:
        raise DataImportError(f"{path}: missing column(s) {', '.join(missing)}")
    index = pd.MultiIndex.from_frame(frame[list(axes)].rename(columns=dict(axes)))
    series = pd.Series(values, index=index, name="iq")
    dataset = xr.Dataset.from_dataframe(series.to_frame())
    dataset.attrs["source"] = str(path)
    return with_units(dataset)


def load_recorded(
    path: str | Path,
    experiment: str,
    qubit: str | None = None,
    run_id: int | None = None,
    axes: Mapping[str, str] | None = None,
    data: str = "data",
) -> xr.Dataset:
    """Pick the importer by file type: .db, .h5/.nc (xarray or snapshot), .sNp, .npz/.csv."""
    path = Path(path)
    if not path.is_file():
        raise DataImportError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".db":
        if run_id is None:
            raise DataImportError(f"{path}: a QCoDeS database needs --run-id")
        return from_qcodes(path, run_id)
    if suffix in (".h5", ".hdf5", ".nc"):
        if _is_snapshot(path):
            if qubit is None:
                raise DataImportError(f"{path}: a fluxcal snapshot needs --qubit")
            return from_snapshot(path, qubit, experiment)
        return from_netcdf(path)
    if len(suffix) == 4 and suffix.startswith(".s") and suffix.endswith("p"):
        return from_touchstone(path)
    if suffix in (".npz", ".csv"):
        if not axes:
            raise DataImportError(f"{path}: name the axes, e.g. --axes xs=flux_voltage")
        return from_arrays(path, axes, data)
    raise DataImportError(f"{path}: unknown file type {suffix!r}")


def _is_snapshot(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return handle.attrs.get("format") == "fluxcal-snapshot"
    except OSError as error:
        raise DataImportError(f"{path}: not a readable HDF5 file ({error})") from None
