"""Every `fluxcal` error is one line on stderr naming the thing, and a non-zero exit.

A catalogue of bad inputs (device, station and settings files, nodes, qubits, stores,
versions, recorded data, the environment) runs through Typer's CliRunner in-process; a few
real `fluxcal` processes prove the installed entry point and its lazy start-up.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

import fluxcal.calibrate
from fluxcal.chatter import RUN_STARTED, measurement_output
from fluxcal.cli import app
from fluxcal.failures import EXIT_BUG, one_line_errors
from fluxcal.instruments.device import default_device_path
from fluxcal.run_files import RunFiles

DEVICE = default_device_path()
FLUXCAL = Path(sys.executable).with_name("fluxcal")
#: Modules the start-up of `fluxcal --help` must not import (seconds of start-up between them).
HEAVY = ("qcodes", "prefect", "lmfit", "xarray", "h5py", "scipy", "matplotlib", "pandas")

#: name -> content of the bad files the catalogue refers to as {name}.
BAD_FILES = {
    "device_syntax": "qubits: [q0\n",
    "device_type": DEVICE.read_text().replace("EJ: 8.9", "EJ: eight"),
    "device_missing_key": DEVICE.read_text().replace("    EC: 2.5\n", ""),
    "device_negative": DEVICE.read_text().replace("kappa: 1.0e6", "kappa: -1.0e6"),
    "device_epoch": DEVICE.read_text().replace('"2026-01-01T00:00:00+00:00"', "yesterday"),
    "device_not_mapping": "- just\n- a list\n",
    "device_binary": "\x00\x01\xff garbage",
    "station_syntax": "instruments: {flux: [\n",
    "station_driver": "instruments:\n  flux:\n    type: no_such_module.Driver\n",
    "station_no_instruments": "name: lab\n",
    "station_wrong_type": "instruments:\n  flux:\n    type: 3\n",
    "station_missing_readout": (
        "instruments:\n  flux:\n    type: fluxcal.instruments.simulated.SimulatedFluxSource\n"
    ),
    "settings_syntax": "defaults: {rabi: [\n",
    "settings_unknown_node": "defaults:\n  rabbi: {shots: 100}\n",
    "settings_wrong_type": "defaults:\n  rabi: {shots: many}\n",
    "a_file": "not a directory\n",
    "trace": "not,a,trace\n1,2\n",
}

#: (arguments with {file} placeholders, fragments the one error line must contain)
CATALOGUE = [
    (["calibrate", "--device", "{missing}"], ["{missing}"]),
    (["calibrate", "--device", "{device_syntax}"], ["{device_syntax}", "not valid YAML"]),
    (["calibrate", "--device", "{device_type}"], ["{device_type}", "qubits.q0.EJ"]),
    (["calibrate", "--device", "{device_missing_key}"], ["qubits.q0.EC", "required"]),
    (["calibrate", "--device", "{device_negative}"], ["qubits.q0.resonator.kappa"]),
    (["calibrate", "--device", "{device_epoch}"], ["{device_epoch}", "epoch"]),
    (["calibrate", "--device", "{device_not_mapping}"], ["{device_not_mapping}"]),
    (["calibrate", "--device", "{device_binary}"], ["{device_binary}"]),
    (["calibrate", "--station", "{missing}"], ["station file not found", "{missing}"]),
    (["calibrate", "--station", "{station_syntax}"], ["{station_syntax}"]),
    (["calibrate", "--station", "{station_driver}"], ["{station_driver}", "no_such_module"]),
    (["calibrate", "--station", "{station_no_instruments}"], ["{station_no_instruments}"]),
    (["calibrate", "--station", "{station_wrong_type}"], ["{station_wrong_type}"]),
    (["calibrate", "--station", "{station_missing_readout}"], ["{station_missing_readout}"]),
    (["calibrate", "--config", "{missing}"], ["settings file not found", "{missing}"]),
    (["calibrate", "--config", "{settings_syntax}"], ["{settings_syntax}", "YAML"]),
    (["calibrate", "--config", "{settings_unknown_node}"], ["rabbi"]),
    (["calibrate", "--config", "{settings_wrong_type}"], ["defaults.rabi.shots"]),
    (["calibrate", "--node", "bogus"], ["unknown calibration node(s): bogus", "resonator_search"]),
    (["calibrate", "--qubit", "q9"], ["unknown qubit(s) q9", "q0, q1"]),
    (["calibrate", "--store", "{a_file}"], ["{a_file}"]),
    (["calibrate", "--config-from-snapshot", "v3"], ["{store}"]),
    (["calibrate", "--config-from-snapshot", "latest"], ["not a version: 'latest'"]),
    (["calibrate", "--config", "{settings_syntax}", "--config-from-snapshot", "1"], ["not both"]),
    (["recalibrate", "bogus"], ["unknown calibration node(s): bogus", "readout_optimisation"]),
    (["recalibrate", "rabi", "--no-prefect", "--device", "{device_type}"], ["{device_type}"]),
    (["drift-check", "--no-prefect"], ["no snapshot store at {store}"]),
    (["drift-check", "--no-prefect", "--store", "{a_file}"], ["{a_file}"]),
    (["snapshots", "list", "--store", "{a_file}"], ["{a_file}"]),
    (["snapshots", "show", "1"], ["no snapshot store at {store}"]),
    (["snapshots", "history", "q0", "T1"], ["{store}"]),
    (["snapshots", "diff", "1", "current"], ["{store}"]),
    (["snapshots", "verify"], ["{store}"]),
    (["snapshots", "rollback", "1", "--reason", "r"], ["{store}"]),
    (["settings", "check", "{missing}"], ["{missing}"]),
    (["settings", "check", "{settings_unknown_node}"], ["rabbi"]),
    (["analyse", "{missing}", "--experiment", "ramsey"], ["{missing}"]),
    (["analyse", "{trace}", "--experiment", "bogus"], ["unknown experiment 'bogus'", "ramsey"]),
    (["analyse", "{device_binary}", "--experiment", "ramsey"], ["{device_binary}"]),
]


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    paths = {"missing": str(tmp_path / "missing.yaml"), "store": str(tmp_path / "store")}
    for name, text in BAD_FILES.items():
        suffix = ".csv" if name == "trace" else ".yaml"
        path = tmp_path / f"{name}{suffix}"
        path.write_text(text)
        paths[name] = str(path)
    return paths


def invoke(args: list[str], store: str):
    """Run fluxcal in-process on `store` (unless the arguments name one)."""
    if "--store" not in args and args[0] not in ("settings", "analyse"):
        args = [*args, "--store", store]
    return CliRunner().invoke(app, args)


def assert_one_line_error(result, *fragments: str, code: int = 1) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.mark.parametrize(("args", "fragments"), CATALOGUE, ids=[" ".join(a) for a, _ in CATALOGUE])
def test_bad_input_ends_in_one_line_naming_it(files, args, fragments):
    result = invoke([arg.format(**files) for arg in args], files["store"])
    line = assert_one_line_error(result, *(f.format(**files) for f in fragments))
    assert "internal error" not in line
    assert not Path(files["store"]).exists()  # nothing, not even an empty store, was created


@pytest.mark.parametrize(
    ("code", "name"), [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only")]
)
def test_a_store_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, code, name):
    def refuse(self):
        raise OSError(code, os.strerror(code), str(self.database))

    monkeypatch.setattr(RunFiles, "open_database", refuse)
    result = invoke(["calibrate", "--node", "resonator_search"], str(tmp_path / "store"))
    assert_one_line_error(result, str(tmp_path / "store" / "runs"), name)


def test_a_database_sqlite_cannot_create_is_one_line(tmp_path, monkeypatch):
    """SQLite's own errors (sqlite3.Error, not OSError) used to end as an internal error."""
    import qcodes.dataset

    def refuse(path):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(qcodes.dataset, "initialise_or_create_database_at", refuse)
    result = invoke(["calibrate", "--node", "resonator_search"], str(tmp_path / "store"))
    assert_one_line_error(result, str(tmp_path / "store" / "runs"), "database or disk is full")


def test_a_bug_is_one_line_marked_as_such_and_can_show_its_traceback(tmp_path, monkeypatch):
    def broken(request):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(fluxcal.calibrate, "run_calibration", broken)
    result = invoke(["calibrate"], str(tmp_path / "store"))
    assert_one_line_error(result, "internal error", "TypeError: unsupported operand", code=EXIT_BUG)
    monkeypatch.setenv("FLUXCAL_TRACEBACK", "1")
    result = invoke(["calibrate"], str(tmp_path / "store"))
    assert isinstance(result.exception, TypeError)


def test_an_unreachable_prefect_server_is_one_line_naming_it():
    broken = typer.Typer()

    @broken.command()
    @one_line_errors
    def run() -> None:
        request = httpx.Request("GET", "http://127.0.0.1:4200/api/flows/")
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    result = CliRunner().invoke(broken, [])
    assert_one_line_error(
        result, "Prefect server unreachable at http://127.0.0.1:4200/api/flows/", "refused"
    )


def test_a_damaged_version_file_is_one_line(tmp_path):
    store = tmp_path / "store"
    invoke(["calibrate", "--node", "resonator_search", "--qubit", "q0"], str(store))
    version = next(store.glob("v*.h5"))
    version.write_bytes(version.read_bytes()[:1000])
    result = invoke(["snapshots", "show", "1"], str(store))
    assert_one_line_error(result, "1")


# ------------------------------------------------------------------- QCoDeS chatter
def test_measurement_chatter_is_dropped_unless_verbose(capsys):
    for verbose in (False, True):
        with measurement_output(verbose):
            print(f"{RUN_STARTED}: 1. ")
            print("a driver warning", end="")
        captured = capsys.readouterr()
        assert captured.out == ""
        expected = f"{RUN_STARTED}: 1. \n" if verbose else ""
        assert captured.err == expected + "a driver warning\n"


def test_calibrate_prints_no_run_ids_by_default_and_all_with_verbose(tmp_path):
    args = ["calibrate", "--node", "resonator_search", "--qubit", "q0"]
    quiet = invoke(args, str(tmp_path / "a"))
    assert quiet.exit_code == 0, quiet.output
    assert RUN_STARTED not in quiet.output
    loud = invoke([*args, "-v"], str(tmp_path / "b"))
    assert loud.exit_code == 0, loud.output
    assert RUN_STARTED in loud.stderr and RUN_STARTED not in loud.stdout


def test_calibrate_help_lists_every_node():
    from fluxcal.calibrations.graph import DEFAULT_GRAPH

    result = CliRunner().invoke(app, ["calibrate", "--help"], terminal_width=400)
    assert result.exit_code == 0
    assert all(name in result.output for name in DEFAULT_GRAPH)


# ------------------------------------------------------------ the real entry point
def run_fluxcal(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """The installed `fluxcal`, killed by PID if it outlives `timeout`."""
    process = subprocess.Popen(
        [str(FLUXCAL), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_the_entry_point_reports_bad_input_in_one_line(files):
    for args in (
        ["snapshots", "list", "--store", files["a_file"]],
        ["calibrate", "--device", files["device_type"], "--store", files["store"]],
    ):
        done = run_fluxcal(*args)
        assert done.returncode == 1
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("error: ") and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("command", "heavy"),
    [(["--help"], HEAVY), (["snapshots", "list"], ("qcodes", "prefect", "lmfit", "matplotlib"))],
)
def test_start_up_imports_only_what_the_command_needs(tmp_path, command, heavy):
    """The ≤ 0.5 s start-up, kept deterministically: what is not imported costs nothing."""
    script = (
        "import sys\n"
        "from fluxcal.cli import app\n"
        "try:\n"
        f"    app({command!r}, prog_name='fluxcal')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)\n"
    )
    env = {**os.environ, "FLUXCAL_STORE": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    loaded = set(done.stderr.split())
    assert "fluxcal" in loaded
    assert loaded.isdisjoint(heavy), sorted(loaded & set(heavy))
