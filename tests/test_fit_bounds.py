"""A fitted parameter pinned at a bound rejects the node, naming the parameter and the bound."""

from __future__ import annotations

import lmfit
import numpy as np
import pytest

from fluxcal.calibrations.fitting import fit_notch, notch_s21
from fluxcal.calibrations.gate import off_bounds, pinned_parameters
from fluxcal.calibrations.node import Analysis, Node


def decay_fit(rate_max: float, physical: bool = False) -> lmfit.model.ModelResult:
    """An exponential decay fitted with its rate capped at `rate_max` (true rate 2)."""
    t = np.linspace(0, 3, 60)
    y = np.exp(-2 * t) + 0.01 * np.random.default_rng(1).normal(size=t.size)
    params = lmfit.Parameters()
    params.add("amplitude", value=0.8, min=0, max=10)
    user_data = (
        {"physical_bound": True} if physical else {"at_bound": "decay faster than the sweep"}
    )
    params.add("rate", value=0.5, min=0.01, max=rate_max, user_data=user_data)
    model = lmfit.Model(lambda t, amplitude, rate: amplitude * np.exp(-rate * t))
    return model.fit(y, params, t=t)


class Fitted(Node):
    name = "fitted"


def test_a_free_fit_is_off_its_bounds() -> None:
    assert off_bounds(decay_fit(rate_max=20.0)) == []


def test_a_parameter_on_its_upper_bound_is_named_with_its_cause() -> None:
    result = decay_fit(rate_max=1.0)
    [criterion] = off_bounds(result)
    assert not criterion.passed
    assert criterion.name == "rate at its upper bound 1 (decay faster than the sweep)"
    assert pinned_parameters(result.params) == [("rate", "upper", 1.0)]


def test_a_physical_bound_may_be_reached() -> None:
    assert off_bounds(decay_fit(rate_max=1.0, physical=True)) == []


def test_minimizer_results_and_fit_objects_holding_one_are_checked() -> None:
    result = decay_fit(rate_max=1.0)
    minimizer = lmfit.minimize(
        lambda p: result.model.eval(p, t=result.userkws["t"]) - result.data, result.params
    )
    assert [c.name for c in off_bounds(minimizer)] == [c.name for c in off_bounds(result)]

    class Holder:
        pass

    holder = Holder()
    holder.result = result
    assert len(off_bounds(holder)) == 1
    assert off_bounds(None) == [] and off_bounds(object()) == []


def test_every_node_rejects_a_pinned_fit() -> None:
    node = Fitted()
    free = Analysis({}, [], fit=decay_fit(rate_max=20.0))
    pinned = Analysis({}, [], fit=decay_fit(rate_max=1.0))
    assert node.gate(free).accepted
    outcome = node.gate(pinned)
    assert not outcome.accepted
    assert "rate at its upper bound 1" in outcome.reason


def test_a_resonance_beyond_the_window_edge_names_the_cause() -> None:
    # The notch fit's own parameters carry their physical meaning at a bound.
    rng = np.random.default_rng(3)
    frequency = np.linspace(6.99e9, 7.01e9, 401)
    s21 = notch_s21(frequency, 7.0e9, 2e4, 4e4, a=0.1, delay=30e-9)
    s21 = s21 + 1e-4 * (rng.normal(size=frequency.size) + 1j * rng.normal(size=frequency.size))
    fit = fit_notch(frequency, s21)
    assert off_bounds(fit) == []
    params = fit.result.params
    params["fr"].set(value=params["fr"].max)
    [criterion] = off_bounds(fit)
    assert "fr at its upper bound" in criterion.name
    assert "the resonance lies at or beyond the window edge" in criterion.name


@pytest.mark.parametrize("side", ["min", "max"])
def test_the_tolerance_is_relative_to_the_allowed_range(side: str) -> None:
    params = lmfit.Parameters()
    params.add("x", value=0.5, min=0.0, max=1.0)
    bound = getattr(params["x"], side)
    params["x"].set(value=bound + (2e-5 if side == "min" else -2e-5))
    assert pinned_parameters(params) == [("x", "lower" if side == "min" else "upper", bound)]
    params["x"].set(value=bound + (1e-3 if side == "min" else -1e-3))
    assert pinned_parameters(params) == []


def test_the_chi_square_limit_tolerates_only_a_small_misfit_of_a_strong_signal() -> None:
    from fluxcal.calibrations.gate import MAX_MISFIT, chi2_limit

    assert chi2_limit(3.0, 10.0) == 3.0  # noise-dominated: the plain limit
    # 200 noise units of signal: a 2 % misfit is 4 noise units, χ²_red = 1 + 16
    assert chi2_limit(3.0, 200.0) == pytest.approx(1 + (MAX_MISFIT * 200) ** 2)
    assert chi2_limit(3.0, float("nan")) == 3.0
    assert chi2_limit(3.0, 0.0) == 3.0
