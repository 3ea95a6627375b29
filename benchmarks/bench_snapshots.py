"""Snapshot store size and timings: bytes per qubit-calibration, one full save and load,
list and history over 1,000 versions.

Run: .venv/bin/python benchmarks/bench_snapshots.py [VERSION_FILE]

VERSION_FILE (optional): a version file written by a real `fluxcal calibrate` run; its
parameters and raw data are re-saved with the current layout, so the size is that of a real
qubit-calibration rather than of the synthetic sample content.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import snapshot_samples as samples

from fluxcal.snapshots import SnapshotStore, StoreWarning
from fluxcal.snapshots.layout import read_experiments, read_version

N_VERSIONS = 1000


def timed(fn, repeat: int) -> float:
    """Median wall time of `repeat` calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def recorded_run(path: Path, tmp: Path) -> None:
    """Re-save a real run's version file and print its size per qubit and save/load times."""
    snap = read_version(path)
    experiments = {q: read_experiments(path, q) for q in snap.qubits}
    store = SnapshotStore(tmp / "recorded")
    start = time.perf_counter()
    store.save(snap.parameters, experiments, snap.station, settings=snap.settings)
    t_save = time.perf_counter() - start
    t_load = timed(lambda: [store.load().experiments(q) for q in snap.qubits], 3)
    size = (store.path / "v000001.h5").stat().st_size / len(snap.qubits)
    before = path.stat().st_size / len(snap.qubits)
    print(f"real run ({path.name}, {len(snap.qubits)} qubit(s)): bytes per qubit-calibration")
    print(f"    as recorded {before / 1e6:.2f} MB, re-saved {size / 1e6:.2f} MB;")
    print(f"    save {t_save * 1e3:.0f} ms, load with raw data {t_load * 1e3:.0f} ms")


def main() -> None:
    params = samples.parameters()
    exps = samples.experiments(n=500)  # 9 experiments, 300..2500 points, complex, one 41x201
    with tempfile.TemporaryDirectory() as tmp:
        store = SnapshotStore(Path(tmp) / "full")
        store.save(params, exps, samples.STATION)  # warm-up: lazy imports, backends
        t_save = timed(lambda: store.save(params, exps, samples.STATION), 5)
        t_load = timed(lambda: store.load().experiments("q0"), 5)
        size = (store.path / "v000002.h5").stat().st_size
        if len(sys.argv) > 1:
            recorded_run(Path(sys.argv[1]), Path(tmp))

        store = SnapshotStore(Path(tmp) / "many")
        start = time.perf_counter()
        for i in range(N_VERSIONS):
            store.save(samples.parameters(shift=i % 7), reason=f"run {i}")
        t_fill = time.perf_counter() - start
        fresh = SnapshotStore(store.path)  # cold: parses index.json
        t_list_cold = timed(lambda: SnapshotStore(store.path).versions(), 3)
        t_list = timed(fresh.versions, 5)
        t_hist = timed(lambda: fresh.history("q0", "T1"), 5)
        t_rebuild = timed(fresh.rebuild_index, 1)

    print(f"bytes per qubit-calibration (sample content):       {size / 1e6:7.2f} MB")
    print(f"save 1 qubit, 16 parameters, 9 experiments:         {t_save * 1e3:7.1f} ms")
    print(f"load it back with all raw data:                  {t_load * 1e3:7.1f} ms")
    print(f"create {N_VERSIONS} parameter-only versions:            {t_fill:7.1f} s")
    print(f"list {N_VERSIONS} versions (fresh store object):        {t_list_cold * 1e3:7.1f} ms")
    print(f"list {N_VERSIONS} versions (index cached):              {t_list * 1e3:7.1f} ms")
    print(f"history of one parameter over {N_VERSIONS} versions:    {t_hist * 1e3:7.1f} ms")
    print(f"rebuild index from {N_VERSIONS} files:                  {t_rebuild:7.1f} s")


if __name__ == "__main__":
    warnings.simplefilter("ignore", StoreWarning)  # an old index is rebuilt once; not news
    main()
