"""Within one node run a repeated fit of equal inputs is reused; nothing is reused outside it."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pytest

from fluxcal.calibrations.fitting.errors import FitError
from fluxcal.calibrations.fitting.reuse import fits_reused, reused


@dataclass(frozen=True)
class Trace:
    x: np.ndarray
    noise: float


calls: list[tuple] = []


@reused
def fit(trace: Trace, scale: float = 1.0, lines: tuple[float, ...] = ()) -> float:
    calls.append((trace, scale, lines))
    if scale < 0:
        raise FitError(f"negative scale {scale}")
    return float(trace.x.sum() * scale + sum(lines))


@pytest.fixture(autouse=True)
def no_calls():
    calls.clear()


def trace(*x: float, noise: float = 0.1) -> Trace:
    return Trace(np.array(x), noise)


def test_equal_inputs_are_fitted_once_within_a_run() -> None:
    with fits_reused():
        first = fit(trace(1.0, 2.0), 2.0)
        # new objects, equal content; a default given explicitly is the same call
        assert fit(trace(1.0, 2.0), scale=2.0, lines=()) == first == 6.0
        assert len(calls) == 1
        fit(trace(1.0, 2.0), 2.0, (0.5,))
        fit(trace(1.0, 2.0, noise=0.2), 2.0)
        fit(trace(1.0, 2.5), 2.0)
        fit(Trace(np.array([1.0, 2.0], dtype=np.float32), 0.1), 2.0)  # other dtype
        assert len(calls) == 5


def test_nothing_is_remembered_outside_a_run_or_from_one_run_to_the_next() -> None:
    fit(trace(1.0), 1.0)
    fit(trace(1.0), 1.0)
    with fits_reused():
        fit(trace(1.0), 1.0)
    with fits_reused():
        fit(trace(1.0), 1.0)
    assert len(calls) == 4


def test_an_error_is_raised_again_without_fitting_again() -> None:
    with fits_reused():
        for _ in range(2):
            with pytest.raises(FitError, match="negative scale -1"):
                fit(trace(1.0), -1.0)
    assert len(calls) == 1


def test_nan_inputs_are_equal_to_themselves() -> None:
    with fits_reused():
        fit(trace(1.0, float("nan")), float("nan"))
        fit(trace(1.0, float("nan")), float("nan"))
    assert len(calls) == 1


def test_arguments_that_are_not_plain_data_are_never_reused() -> None:
    @dataclass  # not frozen: it could change between the calls
    class Mutable:
        x: float

    @reused
    def use(value) -> None:
        calls.append(value)

    with fits_reused():
        for value in (Mutable(1.0), Mutable(1.0), {"a": 1}, {"a": 1}, object()):
            use(value)
    assert len(calls) == 5


def test_each_thread_has_its_own_memory() -> None:
    """The walker runs qubits on several threads, each node run with its own memory."""
    seen = []

    def run() -> None:
        with fits_reused():
            fit(trace(3.0), 1.0)
            fit(trace(3.0), 1.0)
        seen.append(len(calls))

    with fits_reused():
        fit(trace(3.0), 1.0)
        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
    assert len(calls) == 2 and seen == [2]
