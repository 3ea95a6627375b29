"""Wall time, CPU time and device time of calibrating N qubits serially and in parallel.

On the built-in 16-qubit chip (`instruments/device16.yaml`, four feedlines of four), with
the plain runner and the cheap first nodes (default: resonator_search, readout_power; the
whole chain costs minutes of CPU per qubit). N = 1, 4 (one per feedline) and 16 qubits,
each with 1 worker and with one worker per line group. Device time is printed summed (every
node back to back) and in parallel (line groups overlapped: the fridge's busy time).

`--pace P` makes the simulated lab wait P wall seconds per device second, as hardware would:
the run is then device-bound, and the wall time shows whether qubits on separate lines
overlap their acquisitions: wall/parallel near 1 means the run takes the fridge's busy time
(the longest line's device time), not the sum. `--separate-lines` wires every qubit to a
feedline of its own (the same 16 qubits), the case of "16 qubits finish in the wall time of
one".

    python benchmarks/bench_fleet.py [--pace P] [--separate-lines] [NODE ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml
from qcodes.dataset import initialise_or_create_database_at

from fluxcal.calibrations.runner import run_graph
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.fleet import fleet_device_dict, fleet_device_path
from fluxcal.instruments.station import build_station
from fluxcal.instruments.wiring import station_groups

CHEAP = ["resonator_search", "readout_power"]
SELECTIONS = {1: ["q0"], 4: ["q0", "q4", "q8", "q12"], 16: [f"q{i}" for i in range(16)]}


def measure(
    device_file: Path, qubits: list[str], workers: int, nodes: list[str], pace: float
) -> dict[str, float]:
    station = build_station(SimulatedDevice.from_yaml(device_file, time=0.0))
    station.components["readout"].lab.pace = pace
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
        "groups": len(station_groups(station, qubits)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nodes", nargs="*", default=CHEAP)
    parser.add_argument("--pace", type=float, default=0.0, help="wall s per device s")
    parser.add_argument("--separate-lines", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        device_file = fleet_device_path()
        if args.separate_lines:
            device_file = Path(tmp) / "separate.yaml"
            device_file.write_text(yaml.safe_dump(fleet_device_dict(per_feedline=1)))
        initialise_or_create_database_at(str(Path(tmp) / "bench.db"))
        lines = "one feedline per qubit" if args.separate_lines else "four qubits per feedline"
        print(f"nodes: {', '.join(args.nodes)}; {lines}; pace {args.pace:g} wall s/device s")
        print(
            f"{'qubits':>6} {'groups':>6} {'workers':>7} {'wall s':>8} {'cpu s':>7} "
            f"{'device summed s':>16} {'device parallel s':>18} {'wall/parallel':>13} "
            f"{'accepted':>9}"
        )
        for count, qubits in SELECTIONS.items():
            for workers in sorted({1, min(16, count)}):
                m = measure(device_file, qubits, workers, args.nodes, args.pace)
                print(
                    f"{count:>6} {m['groups']:>6} {workers:>7} {m['wall']:>8.1f} "
                    f"{m['cpu']:>7.1f} {m['summed']:>16.1f} {m['parallel']:>18.1f} "
                    f"{m['wall'] / max(m['parallel'], 1e-9):>13.2f} {m['accepted']:>4}/{m['nodes']}"
                )


if __name__ == "__main__":
    main()
