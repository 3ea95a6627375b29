"""Recorded data → the Dataset form the analyses take from a live run.

Every analysis is a pure function of an xarray Dataset with a complex `iq` variable over
named sweep dimensions (`readout_frequency`, `flux_voltage`, `drive_frequency`, `delay`,
…) and its settings in `attrs`. These importers bring other sources into that form so a
fit can be re-run offline: fluxcal's own QCoDeS runs, netCDF/HDF5 files written by xarray
(including fluxcal snapshots, the system of record, and quantify-core datasets), Touchstone
files (via scikit-rf) and plain npz/CSV arrays. A single time-domain trace from another stack
whose last two points are |0⟩/|1⟩ calibration points gets them split off
(`experiments.calibration_points`). Every failure is a `DataImportError` whose message names
the file and says what is wrong, so the command line can print it as one line.
"""

from __future__ import annotations

import json
import sqlite3
import zipfile
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

import numpy as np
import xarray as xr

from fluxcal.calibrations.averaging import AVERAGING_TAG, combine_runs
from fluxcal.calibrations.experiments import calibration_points
from fluxcal.calibrations.session import tidy

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
#: What the digitiser records; an S-parameter is a ratio, an external array's unit unknown.
DIGITISER_UNIT = "V"
ARBITRARY_UNIT = "arb. unit"


class DataImportError(ValueError):
    """A file that cannot be turned into an analysis Dataset; the message says why."""


def with_units(dataset: xr.Dataset, signal_unit: str = DIGITISER_UNIT) -> xr.Dataset:
    """Units on the known sweep axes and on `iq`, keeping any the source already set.

    QCoDeS stores the swept values with an empty unit (the same setpoints parameter serves
    every sweep), so an empty unit counts as none.
    """
    for name in dataset.dims:
        if name in AXIS_UNITS and name in dataset.coords and not dataset[name].attrs.get("units"):
            dataset[name].attrs["units"] = AXIS_UNITS[name]
    if "iq" in dataset and "units" not in dataset["iq"].attrs:
        dataset["iq"].attrs["units"] = signal_unit
    return dataset


def from_qcodes(database: str | Path, run_id: int) -> xr.Dataset:
    """A fluxcal measurement from a QCoDeS database, by (captured) run id.

    A run that is one round of an averaged measurement (`measure_averaged`) gives the whole
    measurement: the shot-weighted mean of all its runs, as the live node saw it.

    The file is checked read-only first: QCoDeS' own `connect` would create its tables in
    any SQLite file it is pointed at, and logs a traceback on one that is not SQLite at all.
    """
    from qcodes.dataset import load_by_guid, load_by_run_spec
    from qcodes.dataset.sqlite.database import connect

    _check_qcodes_file(Path(database))
    connection = connect(str(database))
    try:
        run = load_by_run_spec(captured_run_id=run_id, conn=connection)
        record = run.metadata.get(AVERAGING_TAG)
        if record is None:
            return with_units(tidy(run.to_xarray_dataset()))
        record = json.loads(record)
        runs = [
            tidy(load_by_guid(guid, conn=connection).to_xarray_dataset())
            for guid in record["guids"]
        ]
        return with_units(combine_runs(runs, record))
    except (NameError, ValueError, RuntimeError, KeyError) as error:
        raise DataImportError(f"{database}: run {run_id}: {error}") from None
    finally:
        connection.close()


def _check_qcodes_file(path: Path) -> None:
    if not path.is_file():
        raise DataImportError(f"{path}: no such QCoDeS database")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as error:
        raise DataImportError(f"{path}: not an SQLite database ({error})") from None
    if "runs" not in tables:
        raise DataImportError(f"{path}: not a QCoDeS database (no runs table)")


def from_netcdf(path: str | Path, group: str | None = None) -> xr.Dataset:
    """A Dataset written by xarray (netCDF4/HDF5), e.g. a group of a fluxcal snapshot (whose
    packed single shots and averaged data come back as the analysis saw them)."""
    from fluxcal.snapshots.packing import unpack

    try:
        with xr.open_dataset(path, engine="h5netcdf", group=group) as opened:
            return with_units(unpack(opened.load()))
    except (OSError, ValueError) as error:
        raise DataImportError(f"{path}: cannot read as xarray data ({error})") from None


def from_snapshot(path: str | Path, qubit: str, experiment: str) -> xr.Dataset:
    """The raw data one node stored in a snapshot version file."""
    import h5py

    from fluxcal.snapshots import experiment_group

    group = experiment_group(qubit, experiment)
    with h5py.File(path, "r") as handle:
        if group not in handle:
            raise DataImportError(
                f"{path}: no {experiment} data for {qubit}; has {_stored(handle)}"
            )
    return from_netcdf(path, group=group)


def _stored(handle) -> str:
    """`qubit/experiment` pairs with raw data in an open snapshot file, for error messages."""
    pairs = [
        f"{qubit}/{name}"
        for qubit, qgroup in handle.get("qubits", {}).items()
        for name, egroup in qgroup.get("experiments", {}).items()
        if "data" in egroup
    ]
    return ", ".join(pairs) or "no experiment data"


def from_touchstone(path: str | Path, port: tuple[int, int] = (1, 0)) -> xr.Dataset:
    """S-parameter trace (default S21) of a Touchstone file as `iq` over readout_frequency.

    The trace carries no fluxcal settings: analyses fall back on what the data show.
    """
    import skrf

    try:
        network = skrf.Network(str(path))
    except Exception as error:  # scikit-rf raises many types on malformed files
        raise DataImportError(f"{path}: not a readable Touchstone file ({error})") from None
    if max(port) >= network.nports:
        name = f"S{port[0] + 1}{port[1] + 1}"
        raise DataImportError(f"{path}: has {network.nports} port(s), no {name} trace")
    trace = network.s[:, port[0], port[1]]
    dataset = xr.Dataset(
        {"iq": ("readout_frequency", trace)},
        coords={"readout_frequency": network.f},
        attrs={"source": str(path), "experiment": "resonator_spectroscopy"},
    )
    return with_units(dataset, signal_unit="")


def from_arrays(path: str | Path, axes: Mapping[str, str], data: str = "data") -> xr.Dataset:
    """npz (or CSV) arrays: `axes` maps each array name in the file to a fluxcal axis name.

    The data array's dimensions follow the order of `axes`. A CSV has one column per axis in
    long form plus the data column (real, or `<data>_re`/`<data>_im` for complex).
    """
    path = Path(path)
    unknown = sorted(set(axes.values()) - set(AXIS_UNITS))
    if unknown:
        raise DataImportError(
            f"unknown axis name(s) {', '.join(unknown)}; fluxcal axes: {', '.join(AXIS_UNITS)}"
        )
    if path.suffix.lower() == ".csv":
        return _from_csv(path, axes, data)
    if not zipfile.is_zipfile(path):
        raise DataImportError(f"{path}: not an npz archive")
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
    dataset = xr.Dataset({"iq": (list(coords), values)}, coords=coords, attrs={"source": str(path)})
    return with_units(dataset, signal_unit=ARBITRARY_UNIT)


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
    if index.has_duplicates:
        raise DataImportError(f"{path}: repeated ({', '.join(axes)}) rows; one value per point")
    series = pd.Series(values, index=index, name="iq")
    dataset = xr.Dataset.from_dataframe(series.to_frame())
    dataset.attrs["source"] = str(path)
    return with_units(dataset, signal_unit=ARBITRARY_UNIT)


def load_recorded(
    path: str | Path,
    experiment: str,
    qubit: str | None = None,
    run_id: int | None = None,
    axes: Mapping[str, str] | None = None,
    data: str = "data",
) -> xr.Dataset:
    """Pick the importer by file type: .db, .h5/.nc (xarray, snapshot or quantify-core),
    .sNp, .npz/.csv; calibration points of a single trace from outside fluxcal split off."""
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
        return _from_hdf5(path, experiment)
    if len(suffix) == 4 and suffix.startswith(".s") and suffix.endswith("p"):
        return from_touchstone(path)
    if suffix in (".npz", ".csv"):
        if not axes:
            raise DataImportError(f"{path}: name the axes, e.g. --axes xs=flux_voltage")
        return calibration_points.split(from_arrays(path, axes, data))
    raise DataImportError(f"{path}: unknown file type {suffix!r}")


def _from_hdf5(path: Path, experiment: str) -> xr.Dataset:
    """An xarray file, or a quantify-core dataset (read as `experiment`), its points sorted
    along the sweep once calibration points, known by position, are split off."""
    from fluxcal.calibrations.import_quantify import from_quantify, is_quantify

    dataset = from_netcdf(path)
    if not is_quantify(dataset):
        return calibration_points.split(dataset)
    trace = calibration_points.split(from_quantify(dataset, path, experiment))
    return trace.sortby(trace["iq"].dims[0])


def _is_snapshot(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return handle.attrs.get("format") == "fluxcal-snapshot"
    except OSError as error:
        raise DataImportError(f"{path}: not a readable HDF5 file ({error})") from None
