"""Full calibration chain on one simulated qubit: where the time goes and how right it is.

Prints wall time split into simulation (signal computation), QCoDeS acquisition and storage
(the rest of each acquire step), and fitting/gating; the device time the same experiments
would take on hardware (shots × repetition time); and every parameter's error vs truth.
Run: .venv/bin/python benchmarks/bench_chain.py [qubit]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from qcodes.dataset import initialise_or_create_database_at

from fluxcal.calibrations.runner import run_graph
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.station import build_station


def main(qubit: str = "q0") -> None:
    initialise_or_create_database_at(str(Path(tempfile.mkdtemp()) / "bench.db"))
    device = SimulatedDevice.from_yaml(time=0.0)
    station = build_station(device)
    lab = station.components["readout"].lab
    start = time.perf_counter()
    run = run_graph(station, [qubit])
    wall = time.perf_counter() - start
    results = run.results[qubit]
    acquire = sum(r.acquire_s for r in results.values())
    analyse = sum(r.analyse_s for r in results.values())
    print(f"full chain, {qubit}: {wall:.2f} s wall")
    print(f"  simulation (signals)        {lab.simulation_seconds:7.2f} s")
    print(f"  QCoDeS acquisition/storage  {acquire - lab.simulation_seconds:7.2f} s")
    print(f"  fitting and gating          {analyse:7.2f} s")
    print(
        f"  device time on hardware     {lab.device_seconds:7.1f} s "
        f"({lab.device_seconds / 60:.1f} min)"
    )
    print("\nnode                      outcome    acquire_s  analyse_s   device_s")
    for name, r in results.items():
        print(f"  {name:<24}{r.outcome:<10}{r.acquire_s:9.2f}{r.analyse_s:11.2f}{r.device_s:11.1f}")
    truth = device.truth()[qubit]
    print("\nparameter               value            stderr       truth            error")
    for name, p in sorted(run.parameters[qubit].items()):
        true = truth.get(name)
        error = "" if true is None else f"{p.value - true:+.4g} ({(p.value - true) / true:+.2%})"
        true_text = "" if true is None else f"{true:.6g}"
        print(f"  {name:<22}{p.value:<17.6g}{p.stderr:<13.3g}{true_text:<17}{error}")


if __name__ == "__main__":
    main(*sys.argv[1:])
