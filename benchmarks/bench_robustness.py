"""The full chain on randomly sampled fluxonium chips: how often does it calibrate a lab's chip?

Each chip is drawn from the realistic design space (instruments/design_space.py) with its
own seed and calibrated from scratch with default settings at a fixed clock. Prints the
fully calibrated fraction, the graceful rejections grouped by first failing node and
criterion, and the accepted values outside tolerance (which must be none).
Run: .venv/bin/python benchmarks/bench_robustness.py [n_chips] [first_seed] [workers]
"""

from __future__ import annotations

import collections
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from robustness import calibrate_sampled

from fluxcal.instruments.design_space import sample_device_dict


def _criterion(reason: str) -> str:
    """The failed criterion's name without its numbers, for grouping."""
    return re.split(r" = | \(|: ", reason, maxsplit=1)[0]


def _describe_chip(seed: int) -> str:
    q = sample_device_dict(seed)["qubits"]["q0"]
    r = q["resonator"]
    return (
        f"EJ={q['EJ']:.2f} EC={q['EC']:.2f} EL={q['EL']:.2f} fr={r['frequency'] / 1e9:.2f}G "
        f"κ={r['kappa'] / 1e6:.2f}M g={r['coupling'] / 1e6:.0f}M T={q['temperature'] * 1e3:.0f}mK "
        f"noise×{q['readout']['noise'] / 1.2e-5:.1f}"
    )


def main(n_chips: int = 60, first_seed: int = 1000, workers: int = 2) -> None:
    seeds = list(range(first_seed, first_seed + n_chips))
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        verdicts = dict(zip(seeds, pool.map(calibrate_sampled, seeds), strict=True))
    wall = time.perf_counter() - start
    full = [s for s, (v, _) in verdicts.items() if v.fully_calibrated]
    wrong = {s: v.wrong for s, (v, _) in verdicts.items() if v.wrong}
    causes = collections.Counter(
        (v.first_failure[0], _criterion(v.first_failure[1]))
        for v, _ in verdicts.values()
        if v.first_failure
    )
    print(f"{n_chips} sampled chips (seeds {seeds[0]}–{seeds[-1]}), {wall:.0f} s wall")
    print(f"  fully calibrated       {len(full):3d}  ({len(full) / n_chips:.0%})")
    rejected = n_chips - len(full)
    print(f"  gracefully rejected    {rejected:3d}  ({rejected / n_chips:.0%})")
    print(
        f"  accepted values outside tolerance: {sum(map(len, wrong.values()))} "
        f"on {len(wrong)} chips"
    )
    device_hours = sorted(v.device_seconds / 3600 for v, _ in verdicts.values())
    print(
        f"  device time per chip: median {device_hours[len(device_hours) // 2]:.1f} h, "
        f"max {device_hours[-1]:.1f} h (shots × repetition time)"
    )
    coverage: dict[str, list[float]] = collections.defaultdict(list)
    for verdict, _ in verdicts.values():
        for name, error in verdict.normalised_errors.items():
            coverage[name].append(error)
    everything = [e for errors in coverage.values() for e in errors]
    inside = sum(abs(e) <= 3 for e in everything)
    print(
        f"  stderr coverage: {inside} of {len(everything)} values within ±3 stderr of truth "
        f"({inside / max(len(everything), 1):.1%})"
    )
    for name, errors in sorted(coverage.items()):
        worst = max(errors, key=abs)
        within = sum(abs(e) <= 3 for e in errors)
        print(f"    {name:<20} {within:3d}/{len(errors):<3d} worst {worst:+.1f}σ")
    print("\nfirst failing node and criterion:")
    for (node, criterion), count in causes.most_common():
        print(f"  {count:3d}  {node:<24} {criterion}")
    print("\nper chip:")
    for seed, (verdict, truth) in verdicts.items():
        status = "ok" if verdict.fully_calibrated else "rejected"
        chi = truth["dispersive_shift"] / truth["resonator_kappa"]
        line = (
            f"  {seed}  {status:<9} f01={truth['qubit_frequency'] / 1e6:6.0f}MHz "
            f"χ/κ={chi:+6.2f}  {_describe_chip(seed)}"
        )
        print(line)
        if verdict.first_failure:
            print(f"        {verdict.first_failure[0]}: {verdict.first_failure[1][:200]}")
        for text in verdict.wrong:
            print(f"        WRONG {text}")
        outside = {k: e for k, e in verdict.normalised_errors.items() if abs(e) > 3}
        if outside:  # which chip an overconfident stderr comes from, to look at it
            print("        beyond 3σ: " + ", ".join(f"{k} {e:+.1f}σ" for k, e in outside.items()))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
