"""The mirror cost's fast distances equal the per-frequency ones they replace.

`flux_symmetry.pair_distances` computes the d² of a column to an interpolated image from
the map's Gram matrix of columns (unguarded) or from squared magnitudes without forming the
scaled residuals (guarded); `_d2(pair_residuals(...))` computes it from the residuals. On a
map with a moving dip, cable-delay winding, noise and missing columns, both agree to
rounding for images on and between bias points and at the scan's edges.
"""

from __future__ import annotations

import numpy as np
import pytest

from fluxcal.calibrations.experiments.flux_symmetry import (
    BiasMap,
    _d2,
    mirror_cost,
    mirror_pairs,
    pair_distances,
    pair_residuals,
)


def moving_dip_map(seed: int) -> BiasMap:
    rng = np.random.default_rng(seed)
    bias = np.linspace(-0.5, 0.5, 121)
    frequency = np.linspace(-5.0, 5.0, 301)
    centre = 2.0 * np.cos(2 * np.pi * (bias - 0.13) / 0.37)
    line = 1 - 0.8 / (1 + 2j * (frequency[None, :] - centre[:, None]))
    iq = line * np.exp(-2j * np.pi * 0.31 * frequency)[None, :]
    iq = iq + 0.02 * (rng.normal(size=iq.shape) + 1j * rng.normal(size=iq.shape))
    iq[[7, 60, 61], 40] = np.nan  # missing points: those columns are left out
    return BiasMap.from_scan(bias, iq)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gram_distances_equal_the_per_frequency_ones(seed) -> None:
    bmap = moving_dip_map(seed)
    rng = np.random.default_rng(100 + seed)
    for period, axis in [(0.37, 0.26), (0.37 + 0.004, 0.26 - 0.003), (0.2, -0.41)]:
        index, image = mirror_pairs(bmap.bias, period, axis)
        image = np.clip(image + rng.uniform(-0.5, 0.5, image.size) * bmap.step, -0.5, 0.5)
        for guarded in (False, True):
            fast = pair_distances(bmap, index, image, guarded)
            slow = _d2(pair_residuals(bmap, index, image, guarded))
            assert fast.shape == slow.shape and fast.size > 50
            np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)
    assert mirror_cost(bmap, 0.37, 0.26) < mirror_cost(bmap, 0.37, 0.30)
