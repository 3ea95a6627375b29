"""Start-up time of the `fluxcal` command line: `--help`, `snapshots list`, `snapshots show`.

Each command runs as a fresh process (the installed entry point), REPEATS times; the script
prints the best and median wall time against the 0.5 s goal, and which heavy packages the
command imported (each of qcodes, prefect, lmfit, xarray costs 0.2-1 s). The store is made
by one cheap calibration first, so `show` reads a real snapshot with experiment data.

    python benchmarks/bench_startup.py [REPEATS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLUXCAL = Path(sys.executable).with_name("fluxcal")
GOAL_S = 0.5
HEAVY = ("qcodes", "prefect", "lmfit", "xarray", "h5py", "pandas", "scipy", "matplotlib")
TIMEOUT_S = 120.0


def run(args: list[str]) -> float:
    """Wall time of one `fluxcal` process; it must succeed (killed by PID at the timeout)."""
    start = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {err.strip()}")
    return time.perf_counter() - start


def heavy_imports(command: list[str]) -> list[str]:
    """The heavy packages a command imports, from a process that runs it and lists them."""
    script = (
        "import sys\nfrom fluxcal.cli import app\ntry:\n"
        f"    app({command!r}, prog_name='fluxcal')\nexcept SystemExit:\n    pass\n"
        "print(' '.join({m.split('.')[0] for m in sys.modules}), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT_S
    )
    loaded = set(done.stderr.split())
    return [name for name in HEAVY if name in loaded]


def main(repeats: int = 5) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        store = str(Path(tmp) / "store")
        calibrate = ["calibrate", "--store", store, "--qubit", "q0", "--node", "resonator_search"]
        run([str(FLUXCAL), *calibrate])
        commands = {
            "fluxcal --help": ["--help"],
            "fluxcal snapshots list": ["snapshots", "list", "--store", store],
            "fluxcal snapshots show current": ["snapshots", "show", "current", "--store", store],
        }
        print(f"start-up, {repeats} runs each (goal ≤ {GOAL_S} s)")
        print(f"{'command':<32} {'best':>7} {'median':>7}  heavy imports")
        for name, args in commands.items():
            times = [run([str(FLUXCAL), *args]) for _ in range(repeats)]
            best, median = min(times), statistics.median(times)
            heavy = ", ".join(heavy_imports(args)) or "none"
            flag = "" if best <= GOAL_S else "  (over the goal)"
            print(f"{name:<32} {best:6.2f}s {median:6.2f}s  {heavy}{flag}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
