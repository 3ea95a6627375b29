"""`fluxcal analyse` re-runs every node's analysis on what a live chain recorded.

One full chain on a simulated chip writes its QCoDeS runs to a database of its own and its
Datasets to a snapshot version (the system of record) and to one netCDF file per node. The
command line must then give exactly the live values from the netCDF file for every node and
from the QCoDeS run id for the nodes whose Dataset is one measurement (a sweep averaged over
several runs comes back whole from any of its run ids), and from the snapshot, which packs
raw data to within its noise, the live outcome and values close to the live ones.
Bad input ends in one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import qcodes
from devices import make_device
from packed_values import assert_close_to_live
from qcodes.dataset import initialise_or_create_database_at
from typer.testing import CliRunner

from fluxcal.calibrations.averaging import AVERAGING_TAG, measure_averaged
from fluxcal.calibrations.graph import DEFAULT_GRAPH
from fluxcal.calibrations.importers import from_qcodes
from fluxcal.calibrations.persist import save_run
from fluxcal.calibrations.runner import NodeResult, run_graph
from fluxcal.calibrations.session import QubitSession
from fluxcal.cli import app
from fluxcal.instruments.station import build_station
from fluxcal.snapshots import SnapshotStore

SEED = 3
QUBIT = "q0"
#: Same data, same code: only float formatting could differ, and JSON round-trips exactly.
SAME = 1e-12

pytestmark = pytest.mark.filterwarnings("ignore:You are writing invalid netcdf")


@dataclass
class Recorded:
    results: dict[str, NodeResult]
    database: Path
    snapshot: Path
    netcdf: dict[str, Path]
    single_run: dict[str, int]  # node -> run id, for nodes whose Dataset is that measurement


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Recorded:
    """The whole graph once on a light chip, recorded three ways."""
    folder = tmp_path_factory.mktemp("recorded")
    database = folder / "lab.db"
    previous = qcodes.config.core.db_location
    initialise_or_create_database_at(str(database))
    try:
        station = build_station(make_device("light", SEED))
        run = run_graph(station, [QUBIT])
    finally:
        initialise_or_create_database_at(previous)
    store = SnapshotStore(folder / "store")
    save_run(store, run, station, "offline re-analysis test")
    results = run.results[QUBIT]
    netcdf = {}
    for name, result in results.items():
        if result.data is not None:
            netcdf[name] = folder / f"{name}.nc"
            result.data.to_netcdf(netcdf[name], engine="h5netcdf", invalid_netcdf=True)
    single_run = {
        name: int(result.data.attrs["run_id"])
        for name, result in results.items()
        if result.data is not None
        and result.data.attrs.get("run_id") is not None
        and is_one_run(result, database)
    }
    return Recorded(results, database, store.load().path, netcdf, single_run)


def is_one_run(result: NodeResult, database: Path) -> bool:
    """The node's Dataset holds exactly what its run id's QCoDeS run holds (with the other
    rounds of an averaged measurement)."""
    stored = from_qcodes(database, int(result.data.attrs["run_id"]))
    live = result.data
    return set(stored.data_vars) == set(live.data_vars) and dict(stored.sizes) == dict(live.sizes)


def cli(*args: str | Path):
    return CliRunner().invoke(app, ["analyse", *map(str, args)])


def reanalysed_values(*args: str | Path) -> dict[str, tuple[float, float]]:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    values = json.loads(result.stdout)["values"]
    return {name: (v["value"], v["stderr"]) for name, v in values.items()}


def assert_same_values(offline: dict, live: dict, node: str) -> None:
    assert offline.keys() == live.keys(), node
    for name, pair in live.items():
        for got, want in zip(offline[name], pair, strict=True):
            assert math.isclose(got, want, rel_tol=SAME) or (
                math.isnan(got) and math.isnan(want)
            ), f"{node}.{name}: {got!r} offline, {want!r} live"


def test_the_live_chain_ran_every_node(recorded: Recorded) -> None:
    assert set(recorded.results) == set(DEFAULT_GRAPH)
    for name, result in recorded.results.items():
        assert result.outcome == "accepted", f"{name}: {result.outcome}: {result.reason}"


@pytest.mark.parametrize("node", list(DEFAULT_GRAPH))
def test_every_node_reanalyses_closely_from_the_snapshot(recorded: Recorded, node) -> None:
    result = cli(recorded.snapshot, "--experiment", node, "--qubit", QUBIT, "--json")
    assert result.exit_code == 0, result.output
    offline = json.loads(result.stdout)
    assert offline["accepted"] == (recorded.results[node].outcome == "accepted")
    values = {name: v["value"] for name, v in offline["values"].items()}
    assert_close_to_live(values, recorded.results[node].analysis.values, node)


@pytest.mark.parametrize("node", list(DEFAULT_GRAPH))
def test_every_node_reanalyses_identically_from_netcdf(recorded: Recorded, node) -> None:
    live = recorded.results[node].analysis.values
    offline = reanalysed_values(recorded.netcdf[node], "--experiment", node)
    assert_same_values(offline, live, node)


def test_single_run_nodes_reanalyse_identically_from_the_qcodes_database(
    recorded: Recorded,
) -> None:
    # the fine resonator scan at the operating point is one averaged sweep, nothing added
    assert "resonator_spectroscopy" in recorded.single_run
    for node, run_id in recorded.single_run.items():
        live = recorded.results[node].analysis.values
        offline = reanalysed_values(recorded.database, "--run-id", run_id, "--experiment", node)
        assert_same_values(offline, live, node)


def test_every_run_of_an_averaged_measurement_loads_as_the_whole_measurement(tmp_path) -> None:
    """Three rounds (100 + 576 + 2324 shots, the √shots law chasing a score that never comes)
    load back from any of their run ids as the shot-weighted mean the live node analysed,
    bit for bit, with the same attrs."""
    database = tmp_path / "averaged.db"
    previous = qcodes.config.core.db_location
    initialise_or_create_database_at(str(database))
    try:
        session = QubitSession(build_station(make_device("light", SEED)), QUBIT)
        session.configure(readout={"shots": 100})
        frequency = np.linspace(6.99e9, 7.01e9, 41)
        live = measure_averaged(
            session, "averaged", "readout_frequency", frequency, lambda iq: 0.5, 1.0, 3000
        )
        run_ids = [int(run) for run in live.attrs["averaging_runs"].split(",")]
        rounds = [qcodes.dataset.load_by_run_spec(captured_run_id=run_id) for run_id in run_ids]
        records = [json.loads(run.metadata[AVERAGING_TAG]) for run in rounds]
        measured = [next(iter(run.to_xarray_dataset().data_vars.values())).values for run in rounds]
    finally:
        initialise_or_create_database_at(previous)
    assert live.attrs["shots"] == 3000
    assert live.attrs["run_id"] == run_ids[-1]
    assert all(record == records[0] for record in records)
    shots = records[0]["shots"]
    assert shots == [100, 576, 2324]
    for run_id in run_ids:
        offline = from_qcodes(database, run_id)
        assert np.array_equal(offline["iq"].values, live["iq"].values)
        assert offline.attrs == live.attrs
    # ... and that mean is the shot-weighted one of what each round measured
    expected = np.average(np.stack(measured), axis=0, weights=shots)
    np.testing.assert_allclose(live["iq"].values, expected, rtol=1e-12)


def test_a_run_that_is_only_part_of_a_node_is_never_accepted_as_the_node(
    recorded: Recorded,
) -> None:
    """resonator_search/resonator_flux add other runs to their Dataset: one run id is not it."""
    partial = {
        name: int(result.data.attrs["run_id"])
        for name, result in recorded.results.items()
        if result.data.attrs.get("run_id") is not None and name not in recorded.single_run
    }
    for node, run_id in partial.items():
        result = cli(recorded.database, "--run-id", run_id, "--experiment", node, "--json")
        if result.exit_code == 0:
            assert not json.loads(result.stdout)["accepted"], node
        else:
            assert_one_line_error(result, "snapshot or netCDF file")


def test_plot_from_the_snapshot(recorded: Recorded, tmp_path) -> None:
    figure = tmp_path / "rabi.png"
    result = cli(recorded.snapshot, "--experiment", "rabi", "--qubit", QUBIT, "--plot", figure)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("rabi: accepted")
    assert figure.stat().st_size > 10_000


# --------------------------------------------------------------------------- bad input


def assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


@pytest.fixture
def trace_file(tmp_path) -> Path:
    path = tmp_path / "trace.npz"
    np.savez(path, f=np.linspace(6e9, 6.01e9, 50), data=np.ones(50, complex))
    return path


def test_unknown_experiment_lists_the_known_ones(trace_file) -> None:
    result = cli(trace_file, "--experiment", "rabbi", "--axes", "f=readout_frequency")
    assert_one_line_error(result, "unknown experiment 'rabbi'; known: resonator_search")


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("run.h5", b"\x00garbage", "not a readable HDF5 file"),
        ("trace.s2p", b"garbage\n", "not a readable Touchstone file"),
        ("lab.db", b"garbage", "not an SQLite database"),
        ("trace.npz", b"garbage", "not an npz archive"),
        ("trace.txt", b"1 2 3", "unknown file type"),
    ],
)
def test_unreadable_files(tmp_path, name, content, fragment) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = cli(path, "--experiment", "rabi", "--run-id", "1", "--axes", "f=delay")
    assert_one_line_error(result, fragment)


def test_missing_file(tmp_path) -> None:
    assert_one_line_error(cli(tmp_path / "none.nc", "--experiment", "rabi"), "no such file")


@pytest.mark.parametrize(
    ("axes", "fragment"),
    [
        (None, "name the axes"),
        ("g=readout_frequency", "missing array(s) g"),
        ("f=readout_freq", "unknown axis name(s) readout_freq"),
        ("f", "--axes takes name=axis pairs"),
    ],
)
def test_missing_or_wrong_axis(trace_file, axes, fragment) -> None:
    extra = ["--axes", axes] if axes else []
    result = cli(trace_file, "--experiment", "resonator_spectroscopy", *extra)
    assert_one_line_error(result, fragment)


def test_data_without_what_the_analysis_needs(trace_file) -> None:
    result = cli(trace_file, "--experiment", "rabi", "--axes", "f=readout_frequency")
    assert_one_line_error(result, "the rabi analysis needs 'drive_amplitude'")


def test_database_without_run_id(tmp_path) -> None:
    database = tmp_path / "lab.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE runs (run_id INTEGER)")
    result = cli(database, "--experiment", "resonator_spectroscopy")
    assert_one_line_error(result, "a QCoDeS database needs --run-id")


def test_snapshot_without_qubit_or_with_an_unknown_one(recorded: Recorded) -> None:
    assert_one_line_error(
        cli(recorded.snapshot, "--experiment", "t1"), "a fluxcal snapshot needs --qubit"
    )
    assert_one_line_error(
        cli(recorded.snapshot, "--experiment", "t1", "--qubit", "q9"), "no t1 data for q9"
    )


def test_run_id_not_in_the_database(recorded: Recorded) -> None:
    result = cli(recorded.database, "--experiment", "t1", "--run-id", "100000")
    assert_one_line_error(result, "run 100000")
