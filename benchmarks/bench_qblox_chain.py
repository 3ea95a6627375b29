"""The whole calibration chain through Qblox's own driver (dummy Cluster), judged against truth.

What `fluxcal calibrate --station instruments/qblox_station.yaml` does, timed: every node
compiles its sweeps to Q1ASM, the dummy assembles and "runs" them (drive tones through the
baseband QCM or, upconverted, the QCM-RF with one LO setting per segment), the bins (fluxonium
physics from the compiled settings and the LOs read back) come back through the driver,
heralded nodes post-select on their herald bins. Prints the drive's bands, each node's outcome
and wall time, the device time the compiled programs would hold the chip, and every parameter
against the simulator's truth with the simulated lab's chain tolerances (`tests/robustness.py`,
`tests/test_chain_accuracy.py`).

Run: .venv/bin/python benchmarks/bench_qblox_chain.py   (tens of minutes on a loaded 2-core box,
most of it qubit_flux_spectroscopy's heralded sweeps: the dummy deep-copies every shot's bin)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from qcodes.dataset import initialise_or_create_database_at  # noqa: E402
from readout_brute_force import brute_force_fidelity  # noqa: E402
from robustness import wrong_values  # noqa: E402

from fluxcal.calibrations.runner import run_graph  # noqa: E402
from fluxcal.instruments.device import SimulatedDevice  # noqa: E402
from fluxcal.instruments.station import load_station  # noqa: E402

STATION = ROOT / "instruments" / "qblox_station.yaml"


def main(qubit: str = "q0") -> int:
    work = Path(tempfile.mkdtemp())
    os.chdir(work)  # the dummy assembles into the working directory
    initialise_or_create_database_at(str(work / "bench.db"))
    station = load_station(STATION)
    device = SimulatedDevice.from_yaml(time=0.0)
    station.components["readout"].simulated_device.time = 0.0  # no drift: truth stays put
    start = time.perf_counter()
    run = run_graph(station, [qubit])
    wall = time.perf_counter() - start
    results = run.results[qubit]
    device_s = station.components["readout"].submodules[qubit].device_time()
    print(
        f"whole chain through the Qblox dummy, {qubit}: {wall:.1f} s wall, "
        f"device time {device_s:.1f} s ({device_s / 60:.1f} min)"
    )
    print(f"drive reaches {station.components['drive'].submodules[qubit].frequency.vals!r}")
    print("\nnode                      outcome     acquire_s  analyse_s")
    for name, r in results.items():
        print(f"  {name:<24}{r.outcome:<10}{r.acquire_s:11.2f}{r.analyse_s:11.2f}")
        if r.outcome != "accepted":
            print(f"      {r.reason}")
    truth = device.truth()[qubit]
    parameters = {name: p.value for name, p in run.parameters[qubit].items()}
    stderrs = {name: p.stderr for name, p in run.parameters[qubit].items()}
    print("\nparameter               value            stderr       truth            error")
    for name, p in sorted(run.parameters[qubit].items()):
        true = truth.get(name)
        if name == "assignment_fidelity":
            true = brute_force_fidelity(device)
        error = "" if true is None else f"{p.value - true:+.4g} ({(p.value - true) / true:+.2%})"
        true_text = "" if true is None else f"{true:.6g}"
        print(f"  {name:<22}{p.value:<17.6g}{p.stderr:<13.3g}{true_text:<17}{error}")
    wrong = wrong_values(parameters, truth, device, stderrs)
    if "assignment_fidelity" in parameters:
        fidelity_error = parameters["assignment_fidelity"] - brute_force_fidelity(device)
        if abs(fidelity_error) >= 0.01:
            wrong.append(
                f"assignment_fidelity off the brute-force optimum by {fidelity_error:+.4f}"
            )
    accepted = all(r.outcome == "accepted" for r in results.values())
    print(f"\nall nodes accepted: {accepted}; outside the chain tolerances: {wrong or 'none'}")
    return 0 if accepted and not wrong else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
