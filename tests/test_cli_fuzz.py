"""Fuzz `fluxcal calibrate --device` with bad device files: always one error line, no traceback.

Each example starts from the built-in device file and breaks it in one way that no valid
chip survives (a required field deleted, a value of the wrong type or sign, an unknown
field, broken YAML, binary noise), so the command must stop at loading the file; a
mutation that left the file valid would start a calibration and fail the test, exposing
the strategy rather than hiding in a timeout. Derandomised: the same 60 files every run.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fluxcal.cli import app
from fluxcal.instruments.device import default_device_path

VALID = yaml.safe_load(default_device_path().read_text())
#: Fields that must be > 0 (dotted paths under a qubit).
POSITIVE = (
    "EJ",
    "EC",
    "EL",
    "temperature",
    "flux.period",
    "resonator.frequency",
    "resonator.coupling",
    "resonator.kappa",
    "coherence.T1",
    "drive.coupling",
    "readout.noise",
)
#: Fields without a default (dotted paths under a qubit).
REQUIRED = ("EJ", "EC", "EL", "seed", "flux", "resonator.frequency", "coherence", "drive.coupling")
NOT_A_NUMBER = st.one_of(
    st.text(alphabet="abcxyz_", min_size=1, max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=2),
    st.none(),
)


def _at(document: dict, qubit: str, dotted: str) -> tuple[dict, str]:
    """The mapping holding `dotted` under `qubit`, and the key in it."""
    *parents, key = dotted.split(".")
    node = document["qubits"][qubit]
    for part in parents:
        node = node[part]
    return node, key


@st.composite
def broken_documents(draw) -> str:
    document: Any = copy.deepcopy(VALID)
    qubit = draw(st.sampled_from(sorted(document["qubits"])))
    kind = draw(st.sampled_from(["delete", "wrong_type", "not_positive", "unknown", "top"]))
    if kind == "delete":
        node, key = _at(document, qubit, draw(st.sampled_from(REQUIRED)))
        del node[key]
    elif kind == "wrong_type":
        node, key = _at(document, qubit, draw(st.sampled_from(POSITIVE)))
        node[key] = draw(NOT_A_NUMBER)
    elif kind == "not_positive":
        node, key = _at(document, qubit, draw(st.sampled_from(POSITIVE)))
        node[key] = -draw(st.floats(min_value=0, max_value=1e12, allow_nan=False))
    elif kind == "unknown":
        node, _ = _at(document, qubit, draw(st.sampled_from(["EJ", "flux.period", "drive.x"])))
        node[draw(st.sampled_from(["extra", "Ej", "kapa"]))] = 1.0
    else:
        document = draw(
            st.sampled_from([{}, {"qubits": {}}, [], "chip", {"name": "x", "qubits": None}])
        )
    return yaml.safe_dump(document, allow_unicode=True)


def broken_text() -> st.SearchStrategy[str]:
    """YAML that does not parse, or bytes that are not YAML at all."""
    valid = default_device_path().read_text()
    return st.one_of(
        st.integers(min_value=0, max_value=len(valid)).map(
            lambda at: valid[:at] + "\n  ]: {\n" + valid[at:]
        ),
        st.binary(min_size=1, max_size=64).map(lambda raw: "\x00" + raw.decode("latin-1")),
    )


@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=st.one_of(broken_documents(), broken_text()))
def test_a_bad_device_file_ends_in_one_error_line(tmp_path, text):
    device = tmp_path / "device.yaml"
    device.write_text(text)
    args = ["calibrate", "--device", str(device), "--store", str(tmp_path / "store")]
    result = CliRunner().invoke(app, [*args, "--node", "resonator_search", "--qubit", "q0"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {device}: ")
    assert "internal error" not in line
