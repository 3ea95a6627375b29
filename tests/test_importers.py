"""Importers: every recorded source becomes the Dataset a live analysis sees, units included.

Each test writes a small file of one kind (CSV long form, npz, netCDF, snapshot, Touchstone,
QCoDeS run) with known content and checks the values land on the right named axes, with SI
units on the coordinates, and that a malformed file is refused with a message naming it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import qcodes
import xarray as xr
from devices import make_device

from fluxcal.calibrations.experiments.resonator_spectroscopy import ResonatorSpectroscopy
from fluxcal.calibrations.fitting.resonator import notch_s21
from fluxcal.calibrations.importers import (
    ARBITRARY_UNIT,
    DataImportError,
    from_arrays,
    from_netcdf,
    from_qcodes,
    from_touchstone,
    load_recorded,
)
from fluxcal.calibrations.session import QubitSession
from fluxcal.instruments.station import build_station
from fluxcal.snapshots import ExperimentRecord, SnapshotStore

RNG_SEED = 7
BIAS = np.array([-0.1, 0.0, 0.1])  # V
FREQUENCY = np.array([4.0e9, 4.1e9, 4.2e9, 4.3e9])  # Hz


def map_values() -> np.ndarray:
    """A complex (bias, frequency) map whose every entry says where it sits."""
    return BIAS[:, None] * 1e3 + 1j * FREQUENCY[None, :] / 1e9


def test_csv_long_form_in_any_row_order_becomes_a_map_with_units(tmp_path) -> None:
    values = map_values()
    rows = [
        {"v": b, "f": f, "s_re": values[i, j].real, "s_im": values[i, j].imag}
        for i, b in enumerate(BIAS)
        for j, f in enumerate(FREQUENCY)
    ]
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=RNG_SEED)  # shuffled rows
    path = tmp_path / "map.csv"
    frame.drop(index=frame.index[0]).to_csv(path, index=False)  # one point never measured

    data = load_recorded(path, "x", axes={"v": "flux_voltage", "f": "drive_frequency"}, data="s")

    assert data["iq"].dims == ("flux_voltage", "drive_frequency")
    np.testing.assert_array_equal(data["flux_voltage"].values, BIAS)
    np.testing.assert_array_equal(data["drive_frequency"].values, FREQUENCY)
    missing = frame.iloc[0]
    assert np.isnan(data["iq"].sel(flux_voltage=missing["v"], drive_frequency=missing["f"]))
    measured = np.isfinite(data["iq"].values)
    np.testing.assert_array_equal(data["iq"].values[measured], values[measured])
    assert data["flux_voltage"].attrs["units"] == "V"
    assert data["drive_frequency"].attrs["units"] == "Hz"
    assert data["iq"].attrs["units"] == ARBITRARY_UNIT


def test_csv_real_column_and_its_failures(tmp_path) -> None:
    path = tmp_path / "trace.csv"
    pd.DataFrame({"f": FREQUENCY, "mag": [1.0, 0.5, 0.2, 0.9]}).to_csv(path, index=False)
    data = from_arrays(path, {"f": "readout_frequency"}, data="mag")
    np.testing.assert_array_equal(data["iq"].values, [1.0, 0.5, 0.2, 0.9])
    assert data["readout_frequency"].attrs["units"] == "Hz"

    with pytest.raises(DataImportError, match="no column signal"):
        from_arrays(path, {"f": "readout_frequency"}, data="signal")
    with pytest.raises(DataImportError, match="missing column"):
        from_arrays(path, {"freq": "readout_frequency"}, data="mag")
    repeated = tmp_path / "repeated.csv"
    pd.DataFrame({"f": [1.0, 1.0], "mag": [1.0, 2.0]}).to_csv(repeated, index=False)
    with pytest.raises(DataImportError, match="repeated"):
        from_arrays(repeated, {"f": "readout_frequency"}, data="mag")


def test_npz_axes_follow_the_order_given(tmp_path) -> None:
    path = tmp_path / "map.npz"
    np.savez(path, xs=BIAS, ys=FREQUENCY, data=map_values())
    data = load_recorded(path, "x", axes={"xs": "flux_voltage", "ys": "drive_frequency"})
    assert data["iq"].dims == ("flux_voltage", "drive_frequency")
    np.testing.assert_array_equal(data["iq"].values, map_values())
    assert data["flux_voltage"].attrs["units"] == "V"
    assert data["drive_frequency"].attrs["units"] == "Hz"
    assert data.attrs["source"] == str(path)


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ({"xs": "flux_voltage", "zz": "drive_frequency"}, r"missing array\(s\) zz"),
        ({"ys": "drive_frequency", "xs": "flux_voltage"}, "has shape"),
        ({"xs": "flux", "ys": "drive_frequency"}, "unknown axis name"),
    ],
)
def test_npz_with_wrong_axes_is_refused(tmp_path, axes, message) -> None:
    path = tmp_path / "map.npz"
    np.savez(path, xs=BIAS, ys=FREQUENCY, data=map_values())
    with pytest.raises(DataImportError, match=message):
        from_arrays(path, axes)


def test_npz_needs_axes_and_a_real_archive(tmp_path) -> None:
    path = tmp_path / "map.npz"
    np.savez(path, xs=BIAS, ys=FREQUENCY, data=map_values())
    with pytest.raises(DataImportError, match="name the axes"):
        load_recorded(path, "x")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip archive")
    with pytest.raises(DataImportError, match="not an npz archive"):
        load_recorded(broken, "x", axes={"xs": "flux_voltage"})


@pytest.mark.filterwarnings("ignore:You are writing invalid netcdf")
def test_netcdf_round_trip_keeps_complex_data_and_adds_missing_units(tmp_path) -> None:
    dataset = xr.Dataset(
        {"iq": (("flux_voltage", "delay"), map_values()[:, :2])},
        coords={"flux_voltage": BIAS, "delay": [1e-6, 2e-6]},
        attrs={"experiment": "ramsey", "detuning": 1e6},
    )
    dataset["delay"].attrs["units"] = "s"
    path = tmp_path / "ramsey.nc"
    dataset.to_netcdf(path, engine="h5netcdf", invalid_netcdf=True)

    data = load_recorded(path, "ramsey")
    xr.testing.assert_identical(data.drop_attrs(deep=True), dataset.drop_attrs(deep=True))
    assert data.attrs["detuning"] == 1e6
    assert data["flux_voltage"].attrs["units"] == "V"
    assert data["delay"].attrs["units"] == "s"
    assert data["iq"].attrs["units"] == "V"


def test_netcdf_that_is_not_hdf5_is_refused(tmp_path) -> None:
    path = tmp_path / "broken.nc"
    path.write_text("no HDF5 here")
    with pytest.raises(DataImportError, match="not a readable HDF5 file"):
        load_recorded(path, "ramsey")
    with pytest.raises(DataImportError, match="cannot read as xarray data"):
        from_netcdf(path)


def test_snapshot_group_of_one_qubit_and_experiment(tmp_path) -> None:
    dataset = xr.Dataset(
        {"iq": ("delay", np.array([1 + 1j, 0.5 + 0.2j]))},
        coords={"delay": [0.0, 1e-5]},
        attrs={"experiment": "t1", "qubit": "q0"},
    )
    store = SnapshotStore(tmp_path / "store")
    record = ExperimentRecord(dataset, {"T1": (1e-4, 1e-6)}, "accepted", "all criteria passed")
    store.save(parameters={}, experiments={"q0": {"t1": record}}, reason="test")
    path = store.load().path

    data = load_recorded(path, "t1", qubit="q0")
    # averaged data comes back as the complex128 it was, at the complex64 precision stored
    np.testing.assert_array_equal(data["iq"].values, dataset["iq"].values.astype(np.complex64))
    assert data["iq"].dtype == np.complex128
    assert data["delay"].attrs["units"] == "s"
    with pytest.raises(DataImportError, match="needs --qubit"):
        load_recorded(path, "t1")
    with pytest.raises(DataImportError, match="no t1 data for q1; has q0/t1"):
        load_recorded(path, "t1", qubit="q1")
    with pytest.raises(DataImportError, match="no echo data for q0"):
        load_recorded(path, "echo", qubit="q0")


def synthetic_touchstone(path, ports: int = 2) -> dict[str, float]:
    """A notch resonance with cable delay and gain written as a Touchstone file."""
    skrf = pytest.importorskip("skrf")
    truth = {"fr": 6.1e9, "Ql": 2.0e4, "Qc": 5.0e4, "phi": 0.1, "a": 0.3, "delay": 40e-9}
    frequency = np.linspace(truth["fr"] - 2e6, truth["fr"] + 2e6, 801)
    rng = np.random.default_rng(RNG_SEED)
    s21 = notch_s21(frequency, **truth)
    s21 = s21 + 1e-3 * (rng.normal(size=s21.size) + 1j * rng.normal(size=s21.size))
    s = np.zeros((frequency.size, ports, ports), complex)
    s[:, ports - 1, 0] = s21
    network = skrf.Network(frequency=skrf.Frequency.from_f(frequency, unit="Hz"), s=s)
    network.write_touchstone(str(path.with_suffix("")))
    return truth


def test_touchstone_s21_is_the_trace_and_the_resonator_analysis_recovers_it(tmp_path) -> None:
    path = tmp_path / "line.s2p"
    truth = synthetic_touchstone(path)
    data = load_recorded(path, "resonator_spectroscopy")
    assert data["iq"].dims == ("readout_frequency",)
    assert data["readout_frequency"].attrs["units"] == "Hz"
    assert data["iq"].attrs["units"] == ""  # an S-parameter is a ratio
    analysis = ResonatorSpectroscopy().analyse(data)
    assert abs(analysis.values["readout_frequency"][0] - truth["fr"]) < 1e3
    assert analysis.values["loaded_q"][0] == pytest.approx(truth["Ql"], rel=0.02)
    assert analysis.values["coupling_q"][0] == pytest.approx(truth["Qc"], rel=0.02)
    expected_qi = 1 / (1 / truth["Ql"] - np.cos(truth["phi"]) / truth["Qc"])
    assert analysis.values["internal_q"][0] == pytest.approx(expected_qi, rel=0.03)
    assert ResonatorSpectroscopy().gate(analysis).accepted


def test_touchstone_failures(tmp_path) -> None:
    one_port = tmp_path / "reflection.s1p"
    synthetic_touchstone(one_port, ports=1)
    with pytest.raises(DataImportError, match="no S21 trace"):
        from_touchstone(one_port)
    garbage = tmp_path / "garbage.s2p"
    garbage.write_text("this is not touchstone\n")
    with pytest.raises(DataImportError, match="not a readable Touchstone file"):
        load_recorded(garbage, "resonator_spectroscopy")


def test_qcodes_run_comes_back_as_the_live_dataset(qcodes_database) -> None:
    session = QubitSession(build_station(make_device("light", RNG_SEED)), "q0")
    session.configure(readout={"shots": 100})
    frequency = np.linspace(6.99e9, 7.01e9, 21)
    live = session.measure("probe", "readout_frequency", frequency, attrs={"step": 1e6})

    data = from_qcodes(qcodes.config.core.db_location, int(live.attrs["run_id"]))
    xr.testing.assert_identical(data.drop_attrs(deep=True), live.drop_attrs(deep=True))
    assert data.attrs == live.attrs
    assert data.attrs["step"] == 1e6 and data.attrs["experiment"] == "probe"
    assert data["readout_frequency"].attrs["units"] == "Hz"
    assert data["iq"].attrs["units"] == "V"
    with pytest.raises(DataImportError, match="run 99999"):
        from_qcodes(qcodes.config.core.db_location, 99999)


def test_database_files_that_are_not_qcodes_are_refused_untouched(tmp_path) -> None:
    import sqlite3

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not sqlite at all")
    with pytest.raises(DataImportError, match="not an SQLite database"):
        from_qcodes(garbage, 1)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE notes (text)")
    before = other.read_bytes()
    with pytest.raises(DataImportError, match="not a QCoDeS database"):
        load_recorded(other, "rabi", run_id=1)
    assert other.read_bytes() == before
    with pytest.raises(DataImportError, match="needs --run-id"):
        load_recorded(other, "rabi")
