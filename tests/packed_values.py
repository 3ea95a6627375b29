"""How far a value re-analysed from a snapshot may lie from the live one.

A version file keeps single shots as integer counts of σ/64 and averaged data as complex64
(snapshots/packing.py), so re-analysis from it is close to, not identical with, the live one.
Shared by tests/test_snapshot_size.py, which measures it, and tests/test_analyse_offline.py.
"""

from __future__ import annotations

import math

import pytest

#: Re-analysed values move by at most this fraction of their stderr (measured: ≤ 0.013)...
STDERR_FRACTION = 0.05
#: ...except statistics that follow the order of single shots, which rounding by < σ/128
#: changes near the readout threshold. The threshold is the argmin of the assignment error
#: over the sorted shots, an optimum that is flat across a fraction of the blob width σ, and
#: its stderr is the blob-centre precision σ/√(2N) ≈ σ/90: rounding moves it within the
#: optimum, by up to 0.3 σ (25 stderr) in about one real run in five, while the fidelity at
#: the optimum stays the same (random shifts of σ/80 move the threshold by 9 stderr). The thermal
#: population counts shots beyond that threshold; the blob SNR and overlap error fit a
#: histogram whose counts change as shots cross bin edges (σ/80 000 at random moves the SNR
#: 0.05 stderr). Measured over 90 rounding grids of six runs: SNR ≤ 0.57 stderr, thermal
#: population ≤ 0.044 stderr, overlap error ≤ 6.8 % (it has no stderr). Where the blobs
#: overlap more, the shots the threshold's move sweeps across count more: the built-in chip
#: read out at 2 µs (assignment fidelity 0.991, after T1 came to run before Ramsey) moved
#: its threshold 7.8 stderr and its thermal population 0.58 stderr.
#: The effective temperature is a monotone function of the thermal population, so it moves
#: by the same number of its stderrs (0.064 in one run of the built-in chip).
SHOT_ORDER_FRACTION = {
    "readout_threshold": 50.0,
    "thermal_population": 1.0,
    "effective_temperature": 1.0,
    "separation_snr": 1.0,
    "overlap_error": 0.15,
}


def assert_close_to_live(
    got: dict[str, float], live: dict[str, tuple[float, float]], node: str
) -> None:
    """Each live (value, stderr) matched by `got[name]` within the tolerances above; a value
    without a stderr is held to the same fraction of itself."""
    assert got.keys() == live.keys(), node
    for name, (value, stderr) in live.items():
        fraction = SHOT_ORDER_FRACTION.get(name, STDERR_FRACTION)
        where = f"{node}.{name}: {got[name]!r} from the snapshot, {value!r} ± {stderr!r} live"
        if stderr > 0 and math.isfinite(stderr):
            assert abs(got[name] - value) <= fraction * stderr, where
        else:
            assert got[name] == pytest.approx(value, rel=fraction, nan_ok=True), where
