"""Exceptions shared by all fits, so a calibration gate can catch one type."""


class FitError(RuntimeError):
    """The data cannot support the fit (no signal, too few points, fit did not converge).

    Raised instead of returning a meaningless result, so that a gate rejects the experiment
    with a readable reason rather than propagating nonsense parameters.
    """


class FaintSignal(FitError):
    """The fit found too little signal for the noise: more shots could make it (a misfit or
    a missing feature would stay whatever the shots)."""
