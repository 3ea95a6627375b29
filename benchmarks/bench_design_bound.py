"""How many fewer shots can any choice of delays need than the fixed grids, for equal uncertainty?

Issue 11 asks adaptive T1 and Ramsey to reach the fixed grids' uncertainty with ≥ 5× fewer
shots. A sequential design only chooses where to measure; the best it can do is the
Cramér–Rao bound of the best design for the parameter wanted (c-optimal: the shot fractions
over delays that minimise that parameter's variance). This script computes, for the fixed
grids the nodes run with `adaptive=False` (101 equally spaced delays, equal shots), the ratio

    variance(fixed grid) / variance(best design)  at the same total shots

which is the largest shot reduction any design, adaptive or not, can reach for the same
uncertainty (the stopping rule aside, which cuts shots by stopping sooner, not by measuring
better). Per-shot noise is binomial projection noise plus readout noise of `sigma_r`
(population units per shot): 0 for a perfect single-shot readout, 1 and 3 for faint ones.
The true values are taken as known (the design is the best one for the truth, which an
adaptive design can only approach).

Run: .venv/bin/python benchmarks/bench_design_bound.py
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

#: Candidate delays for the best design, in units of the decay time.
_CANDIDATES = np.linspace(0.0, 8.0, 801)


def t1_model(t: np.ndarray, amplitude=0.9, offset=0.05, decay=1.0):
    """Excited population after a π pulse and delay t; gradient in (amplitude, offset, T1)."""
    e = np.exp(-t / decay)
    p = offset + amplitude * e
    gradient = np.stack([e, np.ones_like(t), amplitude * e * t / decay**2], axis=-1)
    return p, gradient


def ramsey_model(t, amplitude=0.45, offset=0.5, decay=1.0, detuning=5.0 / (2 * np.pi), phase=0.0):
    """Ramsey population (fringes at `detuning` per decay time); gradient in (amplitude,
    offset, T2, frequency, phase)."""
    e = np.exp(-t / decay)
    angle = 2 * np.pi * detuning * t + phase
    c, s = np.cos(angle), np.sin(angle)
    p = offset + amplitude * e * c
    gradient = np.stack(
        [
            e * c,
            np.ones_like(t),
            amplitude * e * c * t / decay**2,
            -amplitude * e * s * 2 * np.pi * t,
            -amplitude * e * s,
        ],
        axis=-1,
    )
    return p, gradient


def information(model, delays: np.ndarray, fractions: np.ndarray, sigma_r: float) -> np.ndarray:
    """Fisher information per shot of a design (delays with shot fractions)."""
    p, gradient = model(delays)
    variance = np.clip(p * (1 - p), 0.0, None) + sigma_r**2
    variance = np.maximum(variance, 1e-9)
    return np.einsum("k,ki,kj->ij", fractions / variance, gradient, gradient)


def variance_of(model, delays, fractions, sigma_r: float, index: int) -> float:
    matrix = information(model, delays, fractions, sigma_r)
    try:
        return float(np.linalg.inv(matrix)[index, index])
    except np.linalg.LinAlgError:
        return np.inf


def best_variance(model, sigma_r: float, index: int, window: float) -> float:
    """The c-optimal variance over designs on the candidate delays within `window`, by the
    multiplicative algorithm for c-optimality (weights ∝ weights × |cᵀ M⁻¹ f|), which
    converges to the optimum of this convex problem; polished by a softmax minimisation."""
    delays = _CANDIDATES[window >= _CANDIDATES]
    p, gradient = model(delays)
    scale = 1.0 / np.sqrt(np.maximum(np.clip(p * (1 - p), 0, None) + sigma_r**2, 1e-9))
    f = gradient * scale[:, None]
    weights = np.full(delays.size, 1.0 / delays.size)
    c = np.zeros(f.shape[1])
    c[index] = 1.0
    for _ in range(20000):
        matrix = np.einsum("k,ki,kj->ij", weights, f, f)
        direction = np.linalg.solve(matrix, c)
        weights = weights * np.abs(f @ direction)
        weights /= weights.sum()
    support = weights > 1e-4 * weights.max()

    def objective(logits: np.ndarray) -> float:
        fractions = np.exp(logits - logits.max())
        return np.log(
            variance_of(model, delays[support], fractions / fractions.sum(), sigma_r, index)
        )

    polished = minimize(
        objective, np.log(weights[support]), method="Nelder-Mead", options={"maxiter": 4000}
    )
    return float(min(np.exp(polished.fun), variance_of(model, delays, weights, sigma_r, index)))


def main() -> None:
    # T1's fixed window is 5 expected T1, re-measured only outside 3–10 true T1
    # (`ratio_range`): both ends show what a mis-sized window costs.
    cases = [
        ("T1", t1_model, 2, window, f"T1 (window {window:g}·T1)") for window in (3.0, 5.0, 10.0)
    ] + [
        ("Ramsey", ramsey_model, 3, 3.0, "frequency (window 3·T2)"),
        ("Ramsey", ramsey_model, 2, 3.0, "T2* (window 3·T2)"),
    ]
    print("largest shot reduction of any design at the fixed grid's uncertainty (Cramér–Rao)")
    best = {}
    header = ("node", "parameter", "σ_r", "grid var", "best var", "ratio")
    print("{:8s} {:26s} {:>4s} {:>10s} {:>10s} {:>6s}".format(*header))
    for name, model, index, window, label in cases:
        grid = np.linspace(0.0, window, 101)
        equal = np.full(grid.size, 1.0 / grid.size)
        for sigma_r in (0.0, 1.0, 3.0):
            fixed = variance_of(model, grid, equal, sigma_r, index)
            key = (name, index, sigma_r)
            if key not in best:
                best[key] = best_variance(model, sigma_r, index, 8.0)
            ratio = fixed / best[key]
            print(
                f"{name:8s} {label:26s} {sigma_r:4.1f} {fixed:10.3g} {best[key]:10.3g} {ratio:6.2f}"
            )


if __name__ == "__main__":
    main()
