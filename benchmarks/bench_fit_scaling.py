"""How CPU-bound fitting scales from 1 to 2 workers: threads, processes, Dask processes.

A fixed batch of real fits: the first nodes of the chain (default: resonator_search,
readout_power, resonator_flux, qubit_spectroscopy) are acquired once on qubits of the
16-qubit chip (one per feedline), then their analyses (the nodes' own lmfit analyses, pure
functions of the dataset) are re-run `--repeat` times per batch, on

- threads (`ThreadPoolExecutor`): what the walker's workers give; they share the GIL,
- processes (`ProcessPoolExecutor`, one BLAS thread each, started and warmed up before the
  clock runs),
- a Dask `LocalCluster` of single-threaded worker processes through `prefect-dask`'s
  `DaskTaskRunner`, each fit a `fit` task run (`flows.engine.fit_task`), as a flow run with
  `dask_address` does; against a Prefect server started for the benchmark.

Speed-up = batch wall time with 1 worker / with 2. The load average is printed before and
after each row: on a machine shared with other jobs, 2 workers cannot go faster than the
cores left free.

    python benchmarks/bench_fit_scaling.py [--qubits N] [--repeat R] [--no-dask] [NODE ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psutil
import xarray as xr
from qcodes.dataset import initialise_or_create_database_at

from fluxcal.calibrations.graph import DEFAULT_GRAPH
from fluxcal.calibrations.node import Analysis, Node
from fluxcal.calibrations.runner import run_graph
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.fleet import QUBITS_PER_FEEDLINE, fleet_device_path
from fluxcal.instruments.station import build_station
from fluxcal.instruments.wiring import station_groups

FIRST_NODES = ["resonator_search", "readout_power", "resonator_flux", "qubit_spectroscopy"]
Fit = tuple[Node, xr.Dataset]
#: Runs `fits` with `workers` workers; returns the batch's wall seconds.
Runner = Callable[[list[Fit], int], float]


def acquire(qubits: int, nodes: list[str]) -> list[Fit]:
    """Every accepted node's (node, dataset) on `qubits` qubits, one per feedline."""
    chosen = [f"q{QUBITS_PER_FEEDLINE * i}" for i in range(qubits)]
    station = build_station(SimulatedDevice.from_yaml(fleet_device_path(), time=0.0))
    groups = station_groups(station, chosen)
    run = run_graph(station, chosen, nodes=nodes, groups=groups, workers=len(groups))
    return [
        (DEFAULT_GRAPH[r.node].node(), r.data)
        for q in chosen
        for r in run.results[q].values()
        if r.outcome == "accepted" and r.data is not None
    ]


def analyse(fit: Fit) -> Analysis:
    node, data = fit
    return node.analyse(data)


def warm(_: int) -> int:
    """Imports the nodes' fitting code in a worker before the clock runs."""
    import fluxcal.calibrations.graph  # noqa: F401

    return os.getpid()


def one_blas_thread() -> None:
    """A worker process's BLAS on one thread, as Dask's nanny sets it: two workers with two
    BLAS threads each would ask four threads of two cores."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def timed_batch(pool: Executor, fits: list[Fit]) -> float:
    start = time.perf_counter()
    for result in pool.map(analyse, fits):
        assert result is not None
    return time.perf_counter() - start


def with_pool(kind: type[Executor], **options: object) -> Runner:
    def run(fits: list[Fit], workers: int) -> float:
        with kind(max_workers=workers, **options) as pool:
            list(pool.map(warm, range(4 * workers)))
            return timed_batch(pool, fits)

    return run


def serial(fits: list[Fit], workers: int) -> float:
    start = time.perf_counter()
    for fit in fits:
        analyse(fit)
    return time.perf_counter() - start


@contextmanager
def dask_runner() -> Iterator[Runner]:
    """Fits as `fit` task runs on a Dask LocalCluster of processes, inside a flow run."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from distributed import LocalCluster
    from prefect import flow
    from prefect_dask import DaskTaskRunner

    from fluxcal.flows.engine import fit_task
    from fluxcal.flows.local_server import api, temporary_server

    def run(fits: list[Fit], workers: int) -> float:
        with LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            # The fits reach the flow by closure, not as its parameters: Prefect ships the
            # flow run's context, parameters included, with every task it submits to Dask,
            # so a batch passed as a parameter would travel with each of its fits (the
            # engine's flows strip theirs likewise, `flows.engine._without_run_parameters`).
            @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
            def fit_batch(count: int) -> float:
                start = time.perf_counter()
                futures = [
                    fit_task.submit(node, node.name, f"batch{i}", data)
                    for i, (node, data) in enumerate(fits[:count])
                ]
                for future in futures:
                    future.result()
                return time.perf_counter() - start

            fit_batch(2 * workers)  # imports and first task runs on each worker
            return fit_batch(len(fits))

    with temporary_server() as (url, _), api(url):
        yield run


def load() -> str:
    """The 1-minute load average and how busy the CPUs are right now."""
    return f"{psutil.getloadavg()[0]:.1f} ({psutil.cpu_percent(0.5):.0f}% busy)"


def row(name: str, runner: Runner, fits: list[Fit], repeat: int) -> None:
    before = load()
    times = {w: [runner(fits, w) for _ in range(repeat)] for w in (1, 2)}
    one, two = (min(times[w]) for w in (1, 2))
    spread = " ".join(f"{statistics.median(times[w]):.2f}" for w in (1, 2))
    print(
        f"{name:<22} {one:>9.2f} {two:>9.2f} {one / two:>8.2f}× {spread:>16}  "
        f"{before:>16} {load():>16}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nodes", nargs="*", default=FIRST_NODES)
    parser.add_argument("--qubits", type=int, default=4, help="one per feedline, at most 4")
    parser.add_argument("--repeat", type=int, default=3, help="batches per row (best counts)")
    parser.add_argument("--copies", type=int, default=2, help="times each fit is in the batch")
    parser.add_argument("--no-dask", action="store_true", help="skip the Prefect/Dask row")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        initialise_or_create_database_at(str(Path(tmp) / "bench.db"))
        fits = acquire(args.qubits, args.nodes) * args.copies
    per_fit = {}
    for node, data in fits[: len(fits) // args.copies]:
        start = time.perf_counter()
        node.analyse(data)
        per_fit.setdefault(node.name, []).append(time.perf_counter() - start)
    print(
        f"batch: {len(fits)} fits ({args.copies}× {args.qubits} qubits × "
        f"{', '.join(args.nodes)}); serial s per fit: "
        + ", ".join(f"{k} {statistics.mean(v):.2f}" for k, v in per_fit.items())
    )
    print(f"{psutil.cpu_count()} CPUs; best of {args.repeat} batches; load = 1-min average")
    print(
        f"{'workers':<22} {'1 wkr s':>9} {'2 wkr s':>9} {'speed-up':>9} {'medians 1/2 s':>16}  "
        f"{'load before':>16} {'load after':>16}"
    )
    row("serial (reference)", serial, fits, args.repeat)
    row("threads", with_pool(ThreadPoolExecutor), fits, args.repeat)
    row("processes", with_pool(ProcessPoolExecutor, initializer=one_blas_thread), fits, args.repeat)
    if not args.no_dask:
        with dask_runner() as runner:
            row("Dask processes (Prefect)", runner, fits, args.repeat)


if __name__ == "__main__":
    main()
