"""Wall time, CPU time and device time of calibrating N qubits serially and in parallel.

On the built-in 16-qubit chip (`instruments/device16.yaml`, four feedlines of four), with
the plain runner and the cheap first nodes (default: resonator_search, readout_power; the
whole chain costs minutes of CPU per qubit). N = 1, 4 (one per feedline) and 16 qubits,
each with 1 worker and with one worker per feedline. Device time is printed summed (every
node back to back) and in parallel (feedline groups overlapped: the fridge's busy time).

    python benchmarks/bench_fleet.py [NODE ...]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from qcodes.dataset import initialise_or_create_database_at

from fluxcal.calibrations.runner import run_graph
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.fleet import fleet_device_path
from fluxcal.instruments.station import build_station
from fluxcal.instruments.wiring import station_groups

CHEAP = ["resonator_search", "readout_power"]
SELECTIONS = {1: ["q0"], 4: ["q0", "q4", "q8", "q12"], 16: [f"q{i}" for i in range(16)]}


def measure(qubits: list[str], workers: int, nodes: list[str]) -> dict[str, float]:
    station = build_station(SimulatedDevice.from_yaml(fleet_device_path(), time=0.0))
    wall, cpu = time.perf_counter(), time.process_time()
    run = run_graph(
        station, qubits, nodes=nodes, groups=station_groups(station, qubits), workers=workers
    )
    accepted = sum(o == "accepted" for q in run.outcomes().values() for o in q.values())
    return {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "summed": run.device_s(),
        "parallel": run.parallel_device_s(),
        "accepted": accepted,
        "nodes": len(qubits) * len(nodes),
    }


def main(nodes: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        initialise_or_create_database_at(str(Path(tmp) / "bench.db"))
        print(f"nodes: {', '.join(nodes)}")
        print(
            f"{'qubits':>6} {'workers':>7} {'wall s':>8} {'cpu s':>7} "
            f"{'device summed s':>16} {'device parallel s':>18} {'accepted':>9}"
        )
        for count, qubits in SELECTIONS.items():
            for workers in sorted({1, min(4, count)}):
                m = measure(qubits, workers, nodes)
                print(
                    f"{count:>6} {workers:>7} {m['wall']:>8.1f} {m['cpu']:>7.1f} "
                    f"{m['summed']:>16.1f} {m['parallel']:>18.1f} "
                    f"{m['accepted']:>4}/{m['nodes']}"
                )


if __name__ == "__main__":
    main(sys.argv[1:] or CHEAP)
