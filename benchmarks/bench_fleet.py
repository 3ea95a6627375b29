"""Wall time, CPU time and device time of calibrating N qubits, plain and on Prefect.

On a fleet chip from the same schema as the built-in 16-qubit one (`instruments/fleet.py`:
design-space qubits, four to a feedline; as many qubits as the largest N asks for), with the
cheap first nodes (default: resonator_search, readout_power; the whole chain costs minutes of
CPU per qubit). N = 1, 4, 16 qubits (`--qubits`, e.g. 64 too), spread over the feedlines
(4 qubits: one per feedline), each with 1, 2 and 4 workers (`--workers`). Device time is
printed summed (every node back to back) and in parallel (line groups overlapped: the
fridge's busy time).

`--prefect` runs every case as a `daily-calibration` flow run against a Prefect server
started for the benchmark (own PREFECT_HOME, free port, stopped by PID), each node a task
run; the server's CPU is printed next to this process's. It then measures the orchestration
overhead per task with a graph of no-op nodes through the same flow: per node, the wall
time the walker waited for its task run minus the node's own work (acquisition and fit),
and per flow run the time outside the walk (opening the lab, snapshot, artifacts).

`--pace P` makes the simulated lab wait P wall seconds per device second, as hardware would:
the run is then device-bound, and wall/parallel near 1 means the run takes the fridge's busy
time, not the sum. `--separate-lines` wires every qubit to a feedline of its own; `--alike`
makes every qubit a copy of q0 (own noise seed), so that N qubits against 1 compares like
with like.

    python benchmarks/bench_fleet.py [--prefect] [--pace P] [--separate-lines] [--alike]
        [--qubits 1 4 16 64] [--workers 1 2 4] [NODE ...]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import psutil
import xarray as xr
import yaml
from qcodes.dataset import initialise_or_create_database_at

from fluxcal.calibrations.graph import DAY, GraphEntry
from fluxcal.calibrations.node import Analysis, Node
from fluxcal.calibrations.results import GraphRun
from fluxcal.calibrations.runner import run_graph
from fluxcal.calibrations.session import QubitSession
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.fleet import QUBITS, QUBITS_PER_FEEDLINE, fleet_device_dict
from fluxcal.instruments.station import build_station
from fluxcal.instruments.wiring import station_groups

CHEAP = ["resonator_search", "readout_power"]
#: Length of the no-op chain per qubit in the overhead measurement, and its qubit count.
NOOP_CHAIN, NOOP_QUBITS = 5, 4

Engine = Callable[[Path, list[str], int, list[str], float], GraphRun]


def spread(count: int, per_feedline: int) -> list[str]:
    """`count` qubits of the first max(count, 16), taken one per feedline in turn: 4 is one
    on each of the 16-qubit chip's lines, 16 that chip, 64 sixteen lines of four."""
    lines = max(count, QUBITS) // per_feedline
    order = [f"q{line * per_feedline + k}" for k in range(per_feedline) for line in range(lines)]
    return order[:count]


def alike(qubits: dict[str, dict]) -> dict[str, dict]:
    """Every qubit q0's physics on its own lines and noise seed: N qubits then cost N times
    one in device time, so the wall time of N against 1 shows what running at once gains
    (the sampled qubits' own costs differ by up to ~10×, and the slowest sets the wall)."""
    first = next(iter(qubits.values()))
    return {
        name: {**first, "seed": entry["seed"], "lines": entry["lines"]}
        for name, entry in qubits.items()
    }


def fleet_station(device_file: Path, pace: float):
    station = build_station(SimulatedDevice.from_yaml(device_file, time=0.0))
    station.components["readout"].lab.pace = pace
    return station


def plain_engine(
    device_file: Path, qubits: list[str], workers: int, nodes: list[str], pace: float
) -> GraphRun:
    station = fleet_station(device_file, pace)
    groups = station_groups(station, qubits)
    return run_graph(station, qubits, nodes=nodes, groups=groups, workers=workers)


def prefect_engine(store_root: Path, graph: dict[str, GraphEntry] | None = None) -> Engine:
    """Each case a `daily-calibration` flow run (bring-up) into a fresh store."""
    from fluxcal.flows.daily import daily_calibration
    from fluxcal.flows.lab import LiveStation

    def engine(
        device_file: Path, qubits: list[str], workers: int, nodes: list[str], pace: float
    ) -> GraphRun:
        store = tempfile.mkdtemp(dir=store_root)
        outcome = daily_calibration(
            station=LiveStation(fleet_station(device_file, pace)),
            store=store,
            qubits=qubits,
            nodes=nodes,
            graph=graph,
            workers=workers,
            mode="bring-up",
        )
        return outcome.run

    return engine


def process_cpu(process: psutil.Process | None) -> float:
    """CPU seconds of `process` and its children (0 without a process)."""
    if process is None:
        return 0.0
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def task_overhead(run: GraphRun) -> list[float]:
    """Per node that ran: the walker's wait for it minus the node's acquisition and fit."""
    results = {(r.qubit, r.node): r for q in run.results.values() for r in q.values()}
    return [
        (s.end - s.start)
        - (results[s.qubit, s.node].acquire_s + results[s.qubit, s.node].analyse_s)
        for s in run.timeline
    ]


def measure(
    engine: Engine,
    device_file: Path,
    qubits: list[str],
    workers: int,
    nodes: list[str],
    pace: float,
    server: psutil.Process | None,
) -> dict[str, float]:
    wall, cpu, server_cpu = time.perf_counter(), time.process_time(), process_cpu(server)
    run = engine(device_file, qubits, workers, nodes, pace)
    wall = time.perf_counter() - wall
    walk = max(s.end for s in run.timeline) - min(s.start for s in run.timeline)
    return {
        "wall": wall,
        "walk": walk,
        "cpu": time.process_time() - cpu,
        "server_cpu": process_cpu(server) - server_cpu,
        "summed": run.device_s(),
        "parallel": run.parallel_device_s(),
        "accepted": sum(o == "accepted" for q in run.outcomes().values() for o in q.values()),
        "nodes": len(qubits) * len(nodes),
        "groups": len(run.groups),
        "overhead": statistics.mean(task_overhead(run)),
    }


def print_table(engine: Engine, device_file: Path, args, server: psutil.Process | None) -> None:
    per_feedline = 1 if args.separate_lines else QUBITS_PER_FEEDLINE
    print(
        f"{'qubits':>6} {'groups':>6} {'workers':>7} {'wall s':>8} {'cpu s':>7} "
        f"{'server cpu s':>12} {'device summed s':>16} {'device parallel s':>18} "
        f"{'wall/parallel':>13} {'per node s':>10} {'accepted':>9}"
    )
    for count in args.qubits:
        qubits = spread(count, per_feedline)
        for workers in args.workers:
            m = measure(engine, device_file, qubits, workers, args.nodes, args.pace, server)
            print(
                f"{count:>6} {m['groups']:>6} {workers:>7} {m['wall']:>8.1f} {m['cpu']:>7.1f} "
                f"{m['server_cpu']:>12.1f} {m['summed']:>16.1f} {m['parallel']:>18.1f} "
                f"{m['wall'] / max(m['parallel'], 1e-9):>13.2f} {m['overhead']:>10.3f} "
                f"{m['accepted']:>4}/{m['nodes']}",
                flush=True,
            )


# ------------------------------------------------------------ orchestration overhead
@dataclass
class NoOp(Node):
    """A node with no work: a two-point dataset, an empty accepted analysis, no plot."""

    name: ClassVar[str] = "noop"

    def acquire(self, session: QubitSession) -> xr.Dataset:
        return xr.Dataset({"signal": ("x", np.zeros(2))}, coords={"x": [0.0, 1.0]})

    def analyse(self, data: xr.Dataset) -> Analysis:
        return Analysis({}, [])

    def plot(self, data: xr.Dataset, analysis: Analysis, path: str | Path) -> Path:
        return Path(path)  # nothing drawn: the measurement is the orchestration's cost


def noop_chain(length: int) -> dict[str, GraphEntry]:
    """noop0 → noop1 → …: every task waits for the one before (the UI's arrows)."""
    return {
        f"noop{i}": GraphEntry(NoOp, (f"noop{i - 1}",) if i else (), DAY) for i in range(length)
    }


def print_overhead(store_root: Path, device_file: Path, server: psutil.Process, args) -> None:
    graph = noop_chain(NOOP_CHAIN)
    engine = prefect_engine(store_root, graph)
    qubits = spread(NOOP_QUBITS, QUBITS_PER_FEEDLINE)
    tasks = len(qubits) * NOOP_CHAIN
    print(f"\norchestration overhead: {NOOP_QUBITS} qubits × {NOOP_CHAIN} no-op nodes = {tasks}")
    print(
        f"{'workers':>7} {'flow wall s':>11} {'walk s':>7} {'outside walk s':>14} "
        f"{'per task ms (mean)':>18} {'per task ms (max)':>17} {'walk/tasks ms':>13} "
        f"{'cpu s':>6} {'server cpu s':>12}"
    )
    for workers in args.workers:
        wall, cpu, server_cpu = time.perf_counter(), time.process_time(), process_cpu(server)
        run = engine(device_file, qubits, workers, list(graph), 0.0)
        wall = time.perf_counter() - wall
        per_task = task_overhead(run)
        walk = max(s.end for s in run.timeline) - min(s.start for s in run.timeline)
        print(
            f"{workers:>7} {wall:>11.2f} {walk:>7.2f} {wall - walk:>14.2f} "
            f"{1e3 * statistics.mean(per_task):>18.1f} {1e3 * max(per_task):>17.1f} "
            f"{1e3 * walk / tasks:>13.1f} {time.process_time() - cpu:>6.1f} "
            f"{process_cpu(server) - server_cpu:>12.1f}",
            flush=True,
        )


@contextmanager
def prefect_server(chip: str) -> Iterator[psutil.Process]:
    """A temporary Prefect server with the chip's one-run-at-a-time limit, as `fluxcal
    deploy` makes it, and this process's client pointed at it (logging warnings only)."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from fluxcal.flows.deploy import create_chip_limit
    from fluxcal.flows.local_server import api, temporary_server

    started = time.perf_counter()
    with temporary_server() as (url, process), api(url):
        print(
            f"Prefect server {url} (pid {process.pid}) up in {time.perf_counter() - started:.0f} s"
        )
        create_chip_limit(chip)
        yield psutil.Process(process.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nodes", nargs="*", default=CHEAP)
    parser.add_argument("--prefect", action="store_true", help="flow runs on a Prefect server")
    parser.add_argument("--pace", type=float, default=0.0, help="wall s per device s")
    parser.add_argument("--separate-lines", action="store_true")
    parser.add_argument(
        "--alike", action="store_true", help="every qubit a copy of q0 (own noise seed)"
    )
    parser.add_argument("--qubits", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    per_feedline = 1 if args.separate_lines else QUBITS_PER_FEEDLINE
    size = max(QUBITS, *args.qubits)
    chip = fleet_device_dict(qubits=size, per_feedline=per_feedline)
    if args.alike:
        chip["qubits"] = alike(chip["qubits"])
    with (
        tempfile.TemporaryDirectory() as tmp,
        prefect_server(chip["name"]) if args.prefect else nullcontext() as server,
    ):
        device_file = Path(tmp) / "fleet.yaml"
        device_file.write_text(yaml.safe_dump(chip))
        initialise_or_create_database_at(str(Path(tmp) / "bench.db"))
        engine = prefect_engine(Path(tmp)) if args.prefect else plain_engine
        lines = "one feedline per qubit" if args.separate_lines else "four qubits per feedline"
        lines += ", every qubit a copy of q0" if args.alike else ""
        where = "Prefect flow runs" if args.prefect else "plain runner"
        print(
            f"{where}; nodes: {', '.join(args.nodes)}; {size}-qubit chip, {lines}; "
            f"pace {args.pace:g} wall s/device s; {psutil.cpu_count()} CPUs, load "
            + " ".join(f"{x:.2f}" for x in psutil.getloadavg())
        )
        print_table(engine, device_file, args, server)
        if args.prefect:
            print_overhead(Path(tmp), device_file, server, args)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"\npeak memory of this process: {peak:.0f} MB; load at the end "
            + " ".join(f"{x:.2f}" for x in psutil.getloadavg())
        )


if __name__ == "__main__":
    main()
