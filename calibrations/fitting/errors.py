"""Exception shared by all fits, so a calibration gate can catch one type."""


class FitError(RuntimeError):
    """The data cannot support the fit (no signal, too few points, fit did not converge).

    Raised instead of returning a meaningless result, so that a gate rejects the experiment
    with a readable reason rather than propagating nonsense parameters.
    """
