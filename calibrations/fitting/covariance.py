"""Standard errors of a weighted fit whose weights are the measured noise."""

from __future__ import annotations

import lmfit
import numpy as np


def scale_errors_by_misfit(result: lmfit.minimizer.MinimizerResult) -> None:
    """Scale `result`'s covariance and standard errors by its reduced χ² when that exceeds 1,
    never down (call on a fit made with `scale_covar=False`; a ModelResult is one too).

    Why: the weights are the measured noise, so a misfit can only add to the errors. lmfit's
    default also scales them by a reduced χ² below 1, which shrinks them: a flux map of few
    rows after its outliers are cut sat at 0.12 and stated EJ 2.9× too precisely (accepted
    4σ off the truth); magnitudes of mostly noise, narrower than their stated error, did the
    same to a readout maximum.
    """
    factor = max(1.0, float(result.redchi))
    if result.covar is not None:
        result.covar = result.covar * factor
    for param in result.params.values():
        if param.stderr is not None:
            param.stderr = float(param.stderr) * np.sqrt(factor)
