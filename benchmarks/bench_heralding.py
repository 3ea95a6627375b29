"""Heralding: what it buys a Rabi measurement, and what the readout node costs.

A few-hundred-MHz fluxonium is 20–40 % excited at 20 mK, so an unheralded Rabi trace has a
contrast of only p0 − p1; heralding (a pre-measurement that keeps shots read as |0⟩) restores
it but spends a readout per shot. For each test chip the Rabi node runs over several noise
seeds, unheralded with N shots, heralded with N/2 shots (equal number of readouts) and with
N shots (equal number of kept shots); the spread of the fitted π amplitude over seeds is its
precision. Then the readout-optimisation node's wall time, and the acquisition time the same
shots would take on hardware (repetition time × shots × readouts).

Run: .venv/bin/python benchmarks/bench_heralding.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from qcodes.dataset import initialise_or_create_database_at

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from devices import make_device

from fluxcal.calibrations.experiments.rabi import Rabi
from fluxcal.calibrations.experiments.readout_optimisation import ReadoutOptimisation
from fluxcal.calibrations.node import UNITS, Node
from fluxcal.calibrations.session import QubitSession
from fluxcal.instruments.station import build_station
from fluxcal.snapshots import CalibratedParameter

KINDS = ("light", "intermediate", "heavy")
SEEDS = range(1, 9)
SHOTS = 1000


def known(truth: dict[str, float], names: tuple[str, ...]) -> dict[str, CalibratedParameter]:
    """Upstream parameters from the truth, the readout at the resonator-spectroscopy dip."""
    values = {**truth, "readout_frequency": truth["resonator_dip_frequency"]}
    return {
        name: CalibratedParameter(values[name], 0.0, UNITS[name], "truth", "") for name in names
    }


def calibrate(node: Node, kind: str, seed: int) -> tuple[dict, dict, float, float]:
    """(values, truth, wall seconds, hardware seconds) of one node run on a fresh station."""
    device = make_device(kind, seed)
    truth = device.truth()["q0"]
    station = build_station(device)
    lab = station.components["readout"].lab
    session = QubitSession(station, "q0", known(truth, node.requires))
    start = time.perf_counter()
    analysis = node.analyse(node.acquire(session))
    wall = time.perf_counter() - start
    if not node.gate(analysis).accepted:
        print(f"    {kind} seed {seed}: rejected: {node.gate(analysis).reason}")
    return analysis.values, truth, wall, lab.device_seconds


def rabi_precision() -> None:
    print(f"Rabi π amplitude over {len(SEEDS)} seeds (relative error; spread = std over seeds)")
    print(f"{'chip':13s} {'variant':34s} {'mean error':>11s} {'spread':>9s} {'mean stderr':>12s}")
    variants = (
        ("unheralded, N shots", Rabi(herald=False, shots=SHOTS)),
        ("heralded, N/2 shots (same readouts)", Rabi(herald=True, shots=SHOTS // 2)),
        ("heralded, N shots (same kept shots)", Rabi(herald=True, shots=SHOTS)),
    )
    for kind in KINDS:
        for label, node in variants:
            errors, stderrs = [], []
            for seed in SEEDS:
                values, truth, _, _ = calibrate(node, kind, seed)
                value, stderr = values["pi_amplitude"]
                errors.append(value / truth["pi_amplitude"] - 1)
                stderrs.append(stderr / truth["pi_amplitude"])
            print(
                f"{kind:13s} {label:34s} {np.mean(errors):+11.2e} {np.std(errors, ddof=1):9.2e}"
                f" {np.mean(stderrs):12.2e}"
            )


def readout_cost() -> None:
    print("\nreadout_optimisation node (default settings)")
    print(f"{'chip':13s} {'wall s':>7s} {'hardware s':>11s} {'fidelity':>9s}")
    for kind in KINDS:
        values, _, wall, hardware = calibrate(ReadoutOptimisation(), kind, 1)
        print(f"{kind:13s} {wall:7.2f} {hardware:11.1f} {values['assignment_fidelity'][0]:9.4f}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        initialise_or_create_database_at(str(Path(folder) / "bench.db"))
        rabi_precision()
        readout_cost()
