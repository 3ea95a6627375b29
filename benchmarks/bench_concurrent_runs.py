"""Eight full `fluxcal calibrate` processes on one store at once: do they all calibrate fully?

A lab may start several calibrations on one store (a scheduled run, an operator's, a drift
check's): each writes its own QCoDeS database and merges its snapshot under the store's lock.
This starts RUNS real `fluxcal calibrate --store SAME_DIR` processes together, twice: all on
q0, then half on q0 and half on q1. It prints per run its exit code, wall time and how many
nodes were accepted; for the store, each version's `verify` status, whether the final
CURRENT holds the newest accepted value of every parameter any version held (no accepted
value lost), and the size of STORE/runs after database retention (`fluxcal.run_files`).

    python benchmarks/bench_concurrent_runs.py [RUNS] [DIR]

DIR (default: a temporary folder, removed) keeps the stores and each run's output and stderr.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

from fluxcal.run_files import RUNS_FOLDER
from fluxcal.snapshots import CalibratedParameter, SnapshotStore
from fluxcal.snapshots.merge import updated_time

FLUXCAL = Path(sys.executable).with_name("fluxcal")
#: Every process is killed by PID if the batch is not done by then (2 cores, 8 full chains).
TIMEOUT_S = 900.0
POLL_S = 0.2


@dataclass
class Run:
    qubit: str
    process: Popen
    out: Path
    err: Path
    started: float
    wall_s: float | None = None  # None: killed at the timeout

    def report(self) -> str:
        wall = "timeout" if self.wall_s is None else f"{self.wall_s:6.1f} s"
        head = f"{self.qubit} pid {self.process.pid:<7} exit {self.process.returncode!s:>4} {wall}"
        try:
            result = json.loads(self.out.read_text())
        except ValueError:
            return f"{head}  no JSON: {_last_line(self.err)}"
        outcomes = result["outcomes"].get(self.qubit, {})
        accepted = sum(o == "accepted" for o in outcomes.values())
        others = ", ".join(f"{n} {o}" for n, o in outcomes.items() if o != "accepted")
        every = "every node accepted" if not others else f"not accepted: {others}"
        saved = "not saved" if result["version"] is None else f"v{result['version']}"
        return f"{head}  {saved}  {accepted}/{len(outcomes)} accepted, {every}"


def _last_line(path: Path) -> str:
    lines = path.read_text().strip().splitlines()
    return lines[-1] if lines else "(nothing on stderr)"


def start(store: Path, qubit: str, logs: Path, n: int) -> Run:
    out, err = logs / f"run{n}.json", logs / f"run{n}.err"
    args = [str(FLUXCAL), "calibrate", "--store", str(store), "--qubit", qubit, "--json"]
    with out.open("w") as o, err.open("w") as e:
        process = Popen(args, stdout=o, stderr=e)
    return Run(qubit, process, out, err, time.perf_counter())


def wait(runs: list[Run]) -> None:
    """Wait for every run, noting each one's wall time; kill by PID whatever outlives TIMEOUT_S."""
    deadline = time.perf_counter() + TIMEOUT_S
    try:
        while any(r.wall_s is None for r in runs) and time.perf_counter() < deadline:
            for r in runs:
                if r.wall_s is None and r.process.poll() is not None:
                    r.wall_s = time.perf_counter() - r.started
            time.sleep(POLL_S)
    finally:
        for r in runs:
            if r.process.poll() is None:
                r.process.kill()
            r.process.wait()


def lost_values(store: SnapshotStore) -> list[str]:
    """Parameters whose newest accepted value, over every version, is not in CURRENT."""
    newest: dict[tuple[str, str], CalibratedParameter] = {}
    for info in store.versions():
        for qubit, params in store.load(info.version).parameters.items():
            for name, p in params.items():
                seen = newest.get((qubit, name))
                if seen is None or updated_time(p) > updated_time(seen):
                    newest[(qubit, name)] = p
    current = store.load().parameters
    return [f"{q} {n}" for (q, n), p in sorted(newest.items()) if current.get(q, {}).get(n) != p]


def store_report(path: Path) -> list[str]:
    store = SnapshotStore(path, create=False)
    problems = store.verify()
    lines = [f"versions: {len(store.versions())}, current v{store.current_version()}"]
    for info in store.versions():
        mine = [p.message for p in problems if p.version == info.version]
        lines.append(f"  v{info.version}: {'; '.join(mine) or 'verify ok'}")
    lines += [f"  store: {p.message}" for p in problems if p.version is None]
    lost = lost_values(store)
    held = sum(len(ps) for ps in store.load().parameters.values())
    lines.append(
        f"CURRENT holds {held} parameters; "
        + (f"LOST: {', '.join(lost)}" if lost else "no accepted value lost")
    )
    databases = list((path / RUNS_FOLDER).glob("*.db"))
    size = sum(db.stat().st_size for db in databases) / 1e6
    lines.append(f"{RUNS_FOLDER}/: {len(databases)} databases, {size:.1f} MB")
    return lines


def batch(qubits: list[str], tmp: Path, name: str) -> None:
    store, logs = tmp / name / "store", tmp / name / "logs"
    logs.mkdir(parents=True)  # fails on a DIR used before: results never mix
    started = time.perf_counter()
    runs = [start(store, q, logs, n) for n, q in enumerate(qubits)]
    wait(runs)
    print(f"\n{name}: {len(runs)} runs at once, {time.perf_counter() - started:.1f} s wall")
    for run in runs:
        print("  " + run.report())
    for line in store_report(store):
        print("  " + line)


def main(count: int = 8, keep: Path | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-concurrent-") as tmp:
        root = keep or Path(tmp)
        batch(["q0"] * count, root, "q0 only")
        batch(["q0", "q1"] * (count // 2), root, "q0 and q1")


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 8,
        Path(sys.argv[2]) if len(sys.argv) > 2 else None,
    )
