"""Snapshot store size and timings: bytes per qubit-calibration, one full save and load,
list and history over 1,000 versions.

Run: .venv/bin/python benchmarks/bench_snapshots.py [VERSION_FILE]

The size of a real qubit-calibration comes from VERSION_FILE, a version file written by a
`fluxcal calibrate` run, re-saved with the current layout; without it, from a one-qubit
calibration of the built-in device at a fixed clock run first (~20 s, the same run every
time), saved as `fluxcal calibrate` saves it.
Either way the file is split into single shots, averaged data, coordinates, station and
settings JSON, and the HDF5/netCDF metadata around them.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import h5py
import snapshot_samples as samples
import xarray as xr

from fluxcal.snapshots import SnapshotStore, StoreWarning, experiment_group
from fluxcal.snapshots.layout import read_experiments, read_version
from fluxcal.snapshots.packing import is_shot_dim

N_VERSIONS = 1000


def timed(fn, repeat: int) -> float:
    """Median wall time of `repeat` calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def calibrated_version(tmp: Path) -> Path:
    """A one-qubit calibration of the built-in device, saved as `fluxcal calibrate` saves it."""
    from qcodes.dataset import initialise_or_create_database_at

    from fluxcal.calibrations.persist import save_run
    from fluxcal.calibrations.runner import run_graph
    from fluxcal.chatter import measurement_output
    from fluxcal.instruments.device import SimulatedDevice
    from fluxcal.instruments.station import build_station

    initialise_or_create_database_at(str(tmp / "runs.db"))
    station = build_station(SimulatedDevice.from_yaml(time=0.0))
    with measurement_output():
        run = run_graph(station, ["q0"])
    store = SnapshotStore(tmp / "calibrated")
    save_run(store, run, station, "benchmark")
    return store.load().path


def kind_of(ds: xr.Dataset, name: str) -> str:
    """Which part of the raw data a stored variable is."""
    if name in ds.coords:
        return "coordinates"
    dims = ds[name].dims
    return "single shots" if any(is_shot_dim(d) for d in dims) else "averaged data"


def breakdown(path: Path) -> dict[str, int]:
    """Bytes of a version file by kind of content; metadata is what the rest leaves."""
    sizes = dict.fromkeys(("single shots", "averaged data", "coordinates"), 0)
    with h5py.File(path, "r") as f:
        sizes["station + settings JSON"] = len(f["station"][()]) + len(f["settings"][()])
        for qubit, qgroup in f["qubits"].items():
            for name, egroup in qgroup.get("experiments", {}).items():
                if "data" not in egroup:
                    continue
                group = experiment_group(qubit, name)
                with xr.open_dataset(path, engine="h5netcdf", group=group) as ds:
                    for var in ds.variables:
                        size = egroup["data"][var].id.get_storage_size()
                        sizes[kind_of(ds, str(var))] += size
    sizes["HDF5/netCDF metadata"] = path.stat().st_size - sum(sizes.values())
    return sizes


def recorded_run(path: Path, tmp: Path) -> None:
    """Re-save a real run's version file; print its size per qubit, what fills it, and
    save/load times."""
    snap = read_version(path)
    experiments = {q: read_experiments(path, q) for q in snap.qubits}
    store = SnapshotStore(tmp / "recorded")
    start = time.perf_counter()
    store.save(snap.parameters, experiments, snap.station, settings=snap.settings)
    t_save = time.perf_counter() - start
    t_load = timed(lambda: [store.load().experiments(q) for q in snap.qubits], 3)
    resaved = store.path / "v000001.h5"
    qubits = len(snap.qubits)
    size = resaved.stat().st_size / qubits
    before = path.stat().st_size / qubits
    print(f"real run ({path.name}, {qubits} qubit(s)): bytes per qubit-calibration")
    print(f"    as recorded {before / 1e6:.2f} MB, re-saved {size / 1e6:.2f} MB:")
    for kind, nbytes in breakdown(resaved).items():
        print(f"        {kind:<26}{nbytes / qubits / 1e6:6.3f} MB")
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
        real = Path(sys.argv[1]) if len(sys.argv) > 1 else calibrated_version(Path(tmp))
        recorded_run(real, Path(tmp))

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
