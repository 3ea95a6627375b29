"""Values printed to their precision: the digits a person reads are the digits measured."""

import math

import pytest

from fluxcal.snapshots.quantities import quantity


@pytest.mark.parametrize(
    ("value", "stderr", "unit", "shown"),
    [
        (6.9997918e9, 1.4e3, "Hz", "6.9997918 ± 0.0000014 GHz"),  # kHz of a GHz value shows
        (363.4176e6, 1.08e3, "Hz", "363.4176 ± 0.0011 MHz"),
        (0.19154, 0.0015, "V", "191.5 ± 1.5 mV"),
        (3.9e-4, 2e-5, "s", "390 ± 20 µs"),
        (-12.5e3, 150.0, "Hz", "-12.50 ± 0.15 kHz"),  # a drift keeps its sign and prefix
        (0.995, 0.0085, "", "0.9950 ± 0.0085"),  # dimensionless: no prefix
        (1.2345678e9, math.nan, "Hz", "1.23457 GHz"),  # unknown stderr: six digits
        (math.nan, 1.0, "V", "-"),
        (0.0, 0.0, "V", "0 V"),
    ],
)
def test_a_value_is_printed_to_the_second_digit_of_its_stderr(value, stderr, unit, shown):
    assert quantity(value, stderr, unit) == shown
