"""Sampled design-space chips 3000–3004, calibrated from no prior knowledge: no accepted value
outside its tolerance, and a rejection names its node and criterion.

The other five chips are in tests/test_design_space_chips_b.py, so that the two xdist
workers calibrate them at the same time; the checks over all ten, and why these chips, are
in tests/test_design_space.py.
"""

from __future__ import annotations

import pytest
from sampled_chips import (
    HALVES,
    assert_no_wrong_value,
    assert_rejection_named,
    shared_folder,
    verdict,
)

#: A chip takes 10–60 s of processor time; pytest-timeout counts it against its first test.
pytestmark = [pytest.mark.timeout(900), pytest.mark.slow(120)]


@pytest.fixture(scope="module", params=HALVES[0])
def chip(request, tmp_path_factory):
    return verdict(request.param, shared_folder(tmp_path_factory))[0]


def test_no_accepted_value_is_outside_its_tolerance(chip) -> None:
    assert_no_wrong_value(chip)


def test_a_rejection_names_its_node_and_criterion(chip) -> None:
    assert_rejection_named(chip)
