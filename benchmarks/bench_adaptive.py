"""Adaptive (sequential) T1, echo and Ramsey against today's fixed grids: device time and honesty.

For the built-in chip and sampled chips (instruments/design_space.py), each node runs
`repeats` times with the sequential design (the default) and with the fixed grid
(`adaptive=False`) on the same station (every run sees fresh noise), starting from the truth
for what it requires (Ramsey's qubit_frequency 100 kHz off, as after spectroscopy). Per chip
and node it prints the median device seconds and shots of both, the median relative stderr
reached, the median |error| vs truth, the device-time ratio fixed / adaptive, and the
precision-normalised ratio (fixed s × rel.stderr² over adaptive s × rel.stderr²: how much less
device time the design needs for the same uncertainty, with the stopping rule factored out).
Then the stderr coverage over every accepted run: the fraction of |value − truth| within 1, 2
and 3 stderr (honest Gaussian errors: 68 %, 95 %, 99.7 %).
Run: .venv/bin/python benchmarks/bench_adaptive.py [n_sampled_chips] [repeats] [workers]
"""

from __future__ import annotations

import math
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

BUILT_IN = -1  # "seed" of the built-in chip
FIRST_SAMPLED = 5000
#: Ramsey starts this far off the true frequency (Hz), as after qubit spectroscopy.
FREQUENCY_OFFSET = 100e3
NODES = ("t1", "echo", "ramsey")


def _chip(seed: int):
    from fluxcal.instruments.design_space import sample_device
    from fluxcal.instruments.device import SimulatedDevice

    return SimulatedDevice.from_yaml(time=0.0) if seed == BUILT_IN else sample_device(seed)


def _node(name: str, adaptive: bool):
    from fluxcal.calibrations.experiments.echo import Echo
    from fluxcal.calibrations.experiments.ramsey import Ramsey
    from fluxcal.calibrations.experiments.t1 import T1

    return {"t1": T1, "echo": Echo, "ramsey": Ramsey}[name](adaptive=adaptive)


def _run(node, station, truth: dict[str, float]) -> dict:
    """One acquisition + analysis + gate from the truth; device seconds and shots it took."""
    from fluxcal.calibrations.fitting import FitError
    from fluxcal.calibrations.node import UNITS
    from fluxcal.calibrations.session import QubitSession
    from fluxcal.snapshots import CalibratedParameter

    shifts = {"qubit_frequency": FREQUENCY_OFFSET}
    known = {
        name: CalibratedParameter(
            truth[name] + shifts.get(name, 0.0), math.nan, UNITS[name], "", ""
        )
        for name in node.requires
    }
    session = QubitSession(station, "q0", known)
    start = session.device_time()
    data = node.acquire(session)
    seconds = session.device_time() - start
    repetition = (
        2 * station.components["readout"].lab.device.physics("q0").config.readout.repetition_time
    )
    result = {"device_s": seconds, "shots": seconds / repetition, "accepted": False, "values": {}}
    try:
        analysis = node.analyse(data)
    except FitError:
        return result
    result["accepted"] = node.gate(analysis).accepted
    result["values"] = {
        name: (*analysis.values[name], truth[name]) for name in node.produces if name in truth
    }
    return result


def chip_runs(seed: int, repeats: int) -> dict:
    """node -> mode -> list of run results on one chip."""
    from qcodes.dataset import initialise_or_create_database_at

    from fluxcal.instruments.station import build_station

    initialise_or_create_database_at(str(Path(tempfile.mkdtemp()) / f"chip{seed}.db"))
    device = _chip(seed)
    station = build_station(device)
    truth = device.truth()["q0"]
    return {
        name: {
            mode: [_run(_node(name, mode == "adaptive"), station, truth) for _ in range(repeats)]
            for mode in ("fixed", "adaptive")
        }
        for name in NODES
    }


def _key(name: str) -> str:
    return {"t1": "T1", "echo": "T2_echo", "ramsey": "T2_ramsey"}[name]


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else math.nan


def _summary(runs: list[dict], key: str) -> dict[str, float]:
    accepted = [r for r in runs if r["accepted"]]
    rel = [r["values"][key][1] / abs(r["values"][key][0]) for r in accepted]
    error = [abs(r["values"][key][0] - r["values"][key][2]) / r["values"][key][2] for r in accepted]
    return {
        "device_s": _median([r["device_s"] for r in runs]),
        "shots": _median([r["shots"] for r in runs]),
        "rel": _median(rel),
        "error": _median(error),
        "accepted": len(accepted),
    }


def _table(results: dict[int, dict], repeats: int) -> None:
    print(
        f"{'chip':>8} {'node':>6} | {'fixed s':>8} {'shots':>9} {'rel.err':>7} {'|err|':>6}"
        f" {'ok':>3} | {'adapt s':>8} {'shots':>9} {'rel.err':>7} {'|err|':>6} {'ok':>3}"
        f" | {'ratio':>6} {'per-σ²':>6}"
    )
    ratios: dict[str, list[float]] = {name: [] for name in NODES}
    for seed, nodes in results.items():
        for name in NODES:
            fixed = _summary(nodes[name]["fixed"], _key(name))
            adaptive = _summary(nodes[name]["adaptive"], _key(name))
            ratio = fixed["device_s"] / adaptive["device_s"]
            per_variance = ratio * (fixed["rel"] / adaptive["rel"]) ** 2
            ratios[name].append(ratio)
            chip = "built-in" if seed == BUILT_IN else str(seed)
            cells = [
                f"{m['device_s']:8.0f} {m['shots']:9.0f} {m['rel']:7.3f} {m['error']:6.3f}"
                f" {m['accepted']:>3}"
                for m in (fixed, adaptive)
            ]
            print(
                f"{chip:>8} {name:>6} | {cells[0]} | {cells[1]} | {ratio:6.1f} {per_variance:6.2f}"
            )
    print(f"(medians over {repeats} runs per chip; ok = accepted runs)")
    for name in NODES:
        values = np.array(ratios[name])
        print(
            f"{name}: device-time ratio fixed/adaptive median {np.median(values):.1f}×, "
            f"min {values.min():.1f}× over {values.size} chips"
        )


def _coverage(results: dict[int, dict]) -> None:
    print("\nstderr coverage of accepted runs: fraction of |value − truth| within k·stderr")
    print(f"{'parameter':>16} {'mode':>9} {'runs':>5} {'1σ':>6} {'2σ':>6} {'3σ':>6} {'max |z|':>8}")
    for name in NODES:
        for mode in ("fixed", "adaptive"):
            z: dict[str, list[float]] = {}
            for nodes in results.values():
                for run in nodes[name][mode]:
                    if not run["accepted"]:
                        continue
                    for key, (value, stderr, truth) in run["values"].items():
                        z.setdefault(key, []).append(abs(value - truth) / stderr)
            for key, scores in z.items():
                s = np.array(scores)
                print(
                    f"{key:>16} {mode:>9} {s.size:5d} {np.mean(s <= 1):6.2f} {np.mean(s <= 2):6.2f}"
                    f" {np.mean(s <= 3):6.2f} {s.max():8.2f}"
                )


def main(n_sampled: int = 5, repeats: int = 4, workers: int = 2) -> None:
    seeds = [BUILT_IN, *range(FIRST_SAMPLED, FIRST_SAMPLED + n_sampled)]
    with ProcessPoolExecutor(workers) as pool:
        outcomes = pool.map(chip_runs, seeds, [repeats] * len(seeds))
        results = dict(zip(seeds, outcomes, strict=True))
    _table(results, repeats)
    _coverage(results)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
