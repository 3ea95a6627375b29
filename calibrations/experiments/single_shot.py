"""Single-shot readout analysis: discriminate two prepared states, fit the blobs, count heat.

Pure functions of numpy arrays of complex single shots (V), used by the readout-optimisation
node both while it searches (to choose the next setting) and when it analyses the recorded
Dataset. Conventions: the IQ plane is rotated by `angle` so that the mean of the |1⟩-prepared
shots lies along +I from the mean of the |0⟩-prepared shots; a shot whose rotated I exceeds
`threshold` is assigned to |1⟩; assignment fidelity F = 1 − (P(1|0) + P(0|1)) / 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import lmfit
import numpy as np
from scipy import constants, ndimage
from scipy.special import expit, log_ndtr, ndtr

from fluxcal.calibrations.fitting import FitError
from fluxcal.calibrations.fitting.noise import robust_sigma

#: Histogram bins of the double-Gaussian fit.
_BINS = 80
#: A shot further than this many noise widths from the segment joining the blob centres
#: belongs to neither blob nor to the decay/flip tails between them (a glitch).
_OUTLIER_SIGMAS = 6.0
#: A blob of another level has at least this many shots within 3σ of its densest one ...
_MIN_LEVEL_SHOTS = 10
#: ... and there are at most this many (levels 2, 3, 4 of a warm qubit).
_MAX_LEVEL_BLOBS = 3


def rotate(iq: np.ndarray, angle: np.ndarray | float) -> np.ndarray:
    """Shots in the frame whose I axis points from the |0⟩ blob to the |1⟩ blob."""
    return np.asarray(iq, complex) * np.exp(-1j * np.asarray(angle))


@dataclass(frozen=True)
class Discrimination:
    """Best threshold discrimination of |0⟩- and |1⟩-prepared shots, arrays over settings."""

    angle: np.ndarray  # rad
    threshold: np.ndarray  # V on the rotated I axis
    error0: np.ndarray  # P(1|0)
    error1: np.ndarray  # P(0|1)
    shots0: int
    shots1: int

    @property
    def fidelity(self) -> np.ndarray:
        return 1.0 - (self.error0 + self.error1) / 2

    @property
    def fidelity_stderr(self) -> np.ndarray:
        """Binomial standard error; Laplace's rule keeps it non-zero when no shot erred."""
        p0 = (self.error0 * self.shots0 + 1) / (self.shots0 + 2)
        p1 = (self.error1 * self.shots1 + 1) / (self.shots1 + 2)
        return 0.5 * np.sqrt(p0 * (1 - p0) / self.shots0 + p1 * (1 - p1) / self.shots1)


def discriminate(iq0: np.ndarray, iq1: np.ndarray) -> Discrimination:
    """Angle from the blob means and the threshold that minimises P(1|0) + P(0|1).

    Shapes (..., shots); every leading index is one readout setting, handled at once. The
    threshold is optimised on the data it is applied to, which biases F up by far less than
    its standard error for a few hundred shots or more.
    """
    iq0 = np.asarray(iq0, complex)
    iq1 = np.asarray(iq1, complex)
    angle = np.angle(iq1.mean(axis=-1) - iq0.mean(axis=-1))
    x0 = rotate(iq0, angle[..., None]).real
    x1 = rotate(iq1, angle[..., None]).real
    n0, n1 = x0.shape[-1], x1.shape[-1]
    values = np.concatenate([x0, x1], axis=-1)
    order = np.argsort(values, axis=-1)
    ordered = np.take_along_axis(values, order, axis=-1)
    is_one = (order >= n0).astype(float)
    # threshold just above the k lowest shots, k = 0..n: those are assigned |0⟩
    ones_below = np.concatenate([np.zeros((*is_one.shape[:-1], 1)), np.cumsum(is_one, -1)], -1)
    zeros_below = np.arange(n0 + n1 + 1) - ones_below
    error0 = (n0 - zeros_below) / n0
    error1 = ones_below / n1
    k = np.argmin(error0 + error1, axis=-1)[..., None]
    padded = np.concatenate([ordered[..., :1], ordered, ordered[..., -1:]], axis=-1)
    threshold = 0.5 * (
        np.take_along_axis(padded, k, axis=-1) + np.take_along_axis(padded, k + 1, axis=-1)
    )
    return Discrimination(
        angle,
        threshold[..., 0],
        np.take_along_axis(error0, k, axis=-1)[..., 0],
        np.take_along_axis(error1, k, axis=-1)[..., 0],
        n0,
        n1,
    )


def best_index(fidelity: np.ndarray, margin: int = 0) -> tuple[int, ...]:
    """Grid index of the highest fidelity at least `margin` steps inside every edge.

    With a few hundred shots the error counts near the optimum are a handful and several
    settings often tie; of those, the one whose 3×3 neighbourhood is best (settings beyond
    the grid count as failures) sits deepest in the plateau, where the confirmation
    measurement then agrees with the search.
    """
    fidelity = np.asarray(fidelity, float)
    fidelity = np.where(np.isfinite(fidelity), fidelity, 0.0)  # unmeasurable: a failure
    inside = np.zeros(fidelity.shape, bool)
    inside[tuple(slice(margin, n - margin) for n in fidelity.shape)] = True
    if not inside.any():
        raise ValueError(f"grid {fidelity.shape} has no point {margin} steps inside its edges")
    smoothed = ndimage.uniform_filter(fidelity, size=3, mode="constant")
    tied = inside & (fidelity == fidelity[inside].max())
    ranked = np.where(tied, smoothed, -np.inf)
    return tuple(int(i) for i in np.unravel_index(np.argmax(ranked), ranked.shape))


@dataclass(frozen=True)
class BlobFit:
    """Double-Gaussian fit of the rotated-I histograms of both prepared states."""

    centre0: float
    centre1: float
    sigma: float  # amplifier noise per quadrature (V), shared by both blobs
    snr: tuple[float, float]  # |centre1 − centre0| / sigma, ±stderr
    result: lmfit.minimizer.MinimizerResult
    bins: np.ndarray  # bin centres (V)
    counts: np.ndarray  # (2, bins): |0⟩- and |1⟩-prepared histograms
    model: np.ndarray  # (2, bins): fitted histograms

    @property
    def overlap_error(self) -> float:
        """Mean assignment error the Gaussian overlap alone would cause (no tails)."""
        return float(ndtr(-self.snr[0] / 2))


def _gaussian(x: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - centre) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)


def _decay_tail(x: np.ndarray, centre0: float, centre1: float, sigma: float, decay: float):
    """Density of |1⟩ shots that decay during the integration, seen through the noise.

    A shot decaying at t ~ Exp(T1) within the integration τ sits at u = t/τ of the way
    from the |0⟩ to the |1⟩ blob, u with density r·e^(−r·u) on [0, 1] for r = τ/T1 (the
    simulator's and a boxcar filter's tail). Convolved with the Gaussian noise in closed
    form, λ·e^(−λz + λ²σ²/2)·[Φ((D − m)/σ) − Φ(−m/σ)] with z the distance from the |0⟩
    blob towards the |1⟩ blob, D = |Δ|, λ = r/D and m = z − λσ², evaluated in logs.
    """
    if decay <= 0:
        return np.zeros_like(x)
    distance = max(abs(centre1 - centre0), 1e-12 * sigma)
    rate = decay / distance
    z = np.sign(centre1 - centre0 or 1.0) * (x - centre0)
    mean = z - rate * sigma**2
    log_scale = np.log(rate) - rate * z + 0.5 * (rate * sigma) ** 2
    low, high = -mean / sigma, (distance - mean) / sigma
    # Φ(high) − Φ(low) from the tail both ends lie in, as log(e^a − e^b) = a + log(1 − e^(b−a))
    upper = low > 0
    a = np.where(upper, log_ndtr(-low), log_ndtr(high))
    b = np.where(upper, log_ndtr(-high), log_ndtr(low))
    with np.errstate(divide="ignore"):  # a = b: no width, log 0 = −∞, density 0
        log_difference = a + np.log(-np.expm1(b - a))
    return np.exp(log_scale + log_difference)


def _blob_histograms(params: lmfit.Parameters, x: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Expected counts per bin: each prepared state is its own blob plus a share of the other;
    what is in |1⟩ partly decays on its way (`_decay_tail`)."""
    v = params.valuesdict()
    g0 = _gaussian(x, v["centre0"], v["sigma"])
    g1 = np.exp(-v["decay"]) * _gaussian(x, v["centre1"], v["sigma"]) + _decay_tail(
        x, v["centre0"], v["centre1"], v["sigma"], v["decay"]
    )
    return np.stack(
        [
            totals[0] * ((1 - v["leak0"]) * g0 + v["leak0"] * g1),
            totals[1] * ((1 - v["leak1"]) * g1 + v["leak1"] * g0),
        ]
    )


def fit_blobs(x0: np.ndarray, x1: np.ndarray) -> BlobFit:
    """Fit both histograms with two Gaussians of shared width (amplifier noise) and the
    decay tail of |1⟩ between them.

    Why the tail: integrating a faint readout for a good part of T1, a third of the |1⟩
    shots decay on the way and fill the space between the blobs; two Gaussians alone pulled
    the |1⟩ centre inwards and widened σ, stating a blob SNR of 1.76 where the blobs were
    2.38 noise widths apart (sampled chip 5006, τ = 0.66 T1). Measurement-induced flips,
    rarer, end up in the tail and the leak weights.
    """
    x0 = np.asarray(x0, float)
    x1 = np.asarray(x1, float)
    if not (np.all(np.isfinite(x0)) and np.all(np.isfinite(x1))):
        raise FitError("single shots contain non-finite values")
    both = np.concatenate([x0, x1])
    low, high = np.percentile(both, [0.2, 99.8])
    if not high > low:
        raise FitError("single shots have no spread")
    edges = np.linspace(low, high, _BINS + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    width = edges[1] - edges[0]
    counts = np.stack([np.histogram(x, edges)[0] for x in (x0, x1)]).astype(float)
    totals = np.array([x0.size, x1.size]) * width
    spread = robust_sigma(x0)
    params = lmfit.Parameters()
    params.add("centre0", value=float(np.median(x0)), min=low, max=high)
    params.add("centre1", value=float(np.median(x1)), min=low, max=high)
    params.add("sigma", value=max(spread, width), min=width / 4, max=high - low)
    # A leak fraction of 0 is physical (a clean readout), not a fit stuck on its bound.
    physical = {"physical_bound": True}
    params.add("leak0", value=0.02, min=0.0, max=0.5, user_data=physical)
    params.add("leak1", value=0.05, min=0.0, max=0.5, user_data=physical)
    # τ/T1 (with flips): 0 is a readout faster than any decay; 5 is 99 % decayed
    params.add("decay", value=0.05, min=0.0, max=5.0, user_data=physical)
    weights = 1.0 / np.sqrt(np.maximum(counts, 1.0))

    def residual(p: lmfit.Parameters) -> np.ndarray:
        return ((_blob_histograms(p, centres, totals) - counts) * weights).ravel()

    result = lmfit.minimize(residual, params)
    if not result.success:
        raise FitError(f"double-Gaussian fit failed: {result.message}")
    p = result.params
    separation = abs(p["centre1"].value - p["centre0"].value)
    sigma = p["sigma"].value
    snr = separation / sigma
    errors = [p[name].stderr for name in ("centre0", "centre1", "sigma")]
    if all(e is not None and np.isfinite(e) for e in errors):
        snr_err = np.hypot(np.hypot(errors[0], errors[1]) / sigma, snr * errors[2] / sigma)
    else:
        snr_err = np.inf
    return BlobFit(
        p["centre0"].value,
        p["centre1"].value,
        sigma,
        (float(snr), float(snr_err)),
        result,
        centres,
        counts,
        _blob_histograms(p, centres, totals),
    )


def outlier_fraction(iq: np.ndarray, angle: float, blobs: BlobFit) -> float:
    """Fraction of shots in neither blob nor the tails between them (glitches, saturation).

    Unheralded shots of a warm or low-frequency qubit also populate levels 2 and 3 (3 % on
    a sampled 314 MHz chip at 53 mK), whose resonator response puts them in blobs of their
    own: those are physics, not bad data, and are not counted (`_level_blobs`).
    """
    rotated = rotate(iq, angle)
    low, high = sorted((blobs.centre0, blobs.centre1))
    along = np.maximum(np.maximum(low - rotated.real, rotated.real - high), 0.0)
    across = rotated.imag - np.median(rotated.imag)
    distance = np.hypot(along, across)
    strays = rotated[~(distance <= _OUTLIER_SIGMAS * blobs.sigma)]
    return float((strays.size - _level_blobs(strays, blobs.sigma)) / iq.size)


def _level_blobs(strays: np.ndarray, sigma: float) -> int:
    """How many of the stray shots form blobs of another level: compact clusters of at least
    `_MIN_LEVEL_SHOTS` with the readout noise's width. Scattered glitches have few
    neighbours; a stuck or saturated digitiser repeats one value (no width): neither counts.
    """
    from scipy.spatial import cKDTree

    explained = 0
    points = np.column_stack([strays.real, strays.imag])
    for _ in range(_MAX_LEVEL_BLOBS):
        if len(points) < _MIN_LEVEL_SHOTS:
            break
        tree = cKDTree(points)
        neighbours = tree.query_ball_point(points, 3 * sigma, return_length=True)
        seed = int(np.argmax(neighbours))
        if neighbours[seed] < _MIN_LEVEL_SHOTS:
            break
        centre = points[tree.query_ball_point(points[seed], 3 * sigma)].mean(axis=0)
        members = np.hypot(*(points - centre).T) <= _OUTLIER_SIGMAS * sigma
        width = np.mean([robust_sigma(points[members, k]) for k in (0, 1)])
        if not 0.5 * sigma <= width <= 2 * sigma:
            break
        explained += int(members.sum())
        points = points[~members]
    return explained


def thermal_population(
    excited: float, shots: int, assignment: Discrimination
) -> tuple[float, float]:
    """Excited population of unprepared shots, corrected with the 2×2 confusion matrix.

    P(read 1) = P(1|0)·(1 − p) + P(1|1)·p, solved for p; the standard error propagates
    the binomial errors of the three measured fractions. Shots in |2⟩ and above count with
    the blob they read nearest (on the simulated chips |0⟩'s), so p is the population of
    |1⟩, short of 1 − p0 where higher levels hold a share (see `effective_temperature`).
    """
    e0 = float(assignment.error0)
    e1 = float(assignment.error1)
    contrast = 1.0 - e0 - e1
    if not contrast > 0:
        return float("nan"), float("nan")
    p = (excited - e0) / contrast
    var_excited = excited * (1 - excited) / shots
    var0 = e0 * (1 - e0) / assignment.shots0
    var1 = e1 * (1 - e1) / assignment.shots1
    stderr = np.sqrt(var_excited + (1 - p) ** 2 * var0 + p**2 * var1) / contrast
    return float(p), float(stderr)


def effective_temperature(
    population: tuple[float, float], qubit_frequency: float
) -> tuple[float, float]:
    """Boltzmann temperature (K) of a two-level system with that excited population.

    p1/p0 = exp(−h·f01 / kT) with p0 = 1 − p. Levels above |1⟩ are ignored: for most
    fluxonium designs they sit GHz higher and hold < 0.1 % at tens of mK, far below the error
    of p. Not for all: a hot, low-EC design holds a few per cent in |2⟩ (sampled chip 5015:
    2.7 % at 55 mK), which the simulated readout counts with |0⟩, so p and this temperature come out
    low by about that share, beyond their stated errors. Correcting it needs the level
    energies (the flux map's EJ, EC, EL), which this node does not take yet.
    """
    p, p_err = population
    if not 0 < p < 0.5:
        return float("nan"), float("nan")
    log_ratio = np.log((1 - p) / p)
    temperature = constants.h * qubit_frequency / (constants.k * log_ratio)
    stderr = temperature * p_err / (log_ratio * p * (1 - p))
    return float(temperature), float(stderr)


#: Blob separation in noise widths from which the blobs count as resolved: overlapping by
#: ~7 % at most, they still assign most shots unambiguously.
RESOLVED_SNR = 3.0
#: A setting's blob weights this many binomial standard errors from the common ones are not
#: the prepared populations (a false alarm once in ~10⁶ settings).
_POPULATION_SIGMAS = 5.0


@dataclass(frozen=True)
class BlobMixture:
    """Two Gaussian blobs shared by both prepared states, arrays over settings (leading axes).

    Each prepared state is a mixture of the same two blobs (common centres and width, per
    state its own weight of the second blob): an unheralded thermal qubit's |0⟩ and |1⟩
    preparations differ only in those weights. `separation` ± `stderr` is |centre1 − centre0|.
    """

    centre0: np.ndarray  # complex V
    centre1: np.ndarray
    sigma: np.ndarray  # V per quadrature
    weights: np.ndarray  # (..., 2): second-blob weight of each prepared state
    separation: np.ndarray  # V
    stderr: np.ndarray  # V; nan where the fit did not converge (or contradicts the populations)
    converged: np.ndarray  # bool
    weights_covariance: np.ndarray  # (..., 2, 2) of `weights`; nan where `stderr` is

    @property
    def snr(self) -> np.ndarray:
        return self.separation / self.sigma


def fit_blob_mixture(
    iq0: np.ndarray, iq1: np.ndarray, iterations: int = 200, common_populations: bool = False
) -> BlobMixture:
    """Maximum-likelihood two-blob mixture of both states' shots (EM), shapes (..., shots).

    Why: without a herald the preparations of a warm qubit differ in their means by only
    (1 − 2p) of the blob separation, and each shot's variance is dominated by which blob it
    fell in, p(1 − p)|Δμ|²; the difference of means then wastes nearly all the information.
    Where the blobs are resolved the mixture assigns shots to blobs and measures Δμ to
    σ/√shots. The standard error is the delta method on the inverse empirical Fisher
    information (outer product of the per-shot scores) of all seven parameters.

    `common_populations`: the settings (leading axes) change only the readout, not the
    preparation, so each state's blob weights must be the same at all of them; a setting
    whose fit contradicts that gets no stderr (see `_contradicts_populations`).
    """
    iq0 = np.asarray(iq0, complex)
    iq1 = np.asarray(iq1, complex)
    n0 = iq0.shape[-1]
    pooled = np.concatenate([iq0, iq1], axis=-1)
    origin = pooled.mean(axis=-1, keepdims=True)
    scale = np.sqrt(np.mean(np.abs(pooled - origin) ** 2, axis=-1, keepdims=True) / 2)
    x = (pooled - origin) / np.where(scale > 0, scale, 1.0)
    is_first = np.arange(x.shape[-1]) < n0
    # start: split the shots across the pooled principal axis (the preparations' weights sum
    # to about one blob each, so the pooled shots are near an even mixture)
    second = np.mean(x**2, axis=-1, keepdims=True)
    axis = np.exp(0.5j * np.angle(second))
    resp = ((x * np.conj(axis)).real > 0).astype(float)
    shots = _Shots.of(x, n0)
    resp, converged = _expectation_maximisation(shots, resp.reshape(shots.real.shape), iterations)
    settings = x.shape[:-1]
    mu0, mu1, var, w = (
        value.reshape(settings + value.shape[1:]) for value in _mixture_step(shots, resp)
    )
    resp, converged = resp.reshape(x.shape), converged.reshape(settings)
    covariance = _mixture_covariance(x, resp, mu0, mu1, var, w, is_first)
    stderr = _separation_stderr(covariance, mu1 - mu0)
    if common_populations:
        shots = np.array([n0, x.shape[-1] - n0])
        snr = np.abs(mu1 - mu0) / np.sqrt(var)
        converged = converged & ~_contradicts_populations(snr, w, shots)
    s = scale[..., 0]
    return BlobMixture(
        origin[..., 0] + s * mu0,
        origin[..., 0] + s * mu1,
        s * np.sqrt(var),
        np.stack([w[..., 0], w[..., 1]], axis=-1),
        s * np.abs(mu1 - mu0),
        np.where(converged, s * stderr, np.nan),
        converged,
        np.where(converged[..., None, None], covariance[..., 5:, 5:], np.nan),
    )


@dataclass(frozen=True)
class PulseTransfer:
    """What the π pulse did to the unheralded populations: the second-blob weights of the
    unpulsed and pulsed preparations, pooled over the settings that measure them, with their
    covariance. The second blob is the one the unpulsed (thermal) preparation fills less.

    With a thermal population p of |1⟩ and a pulse moving a fraction q of the population
    difference (p → p + q(1 − 2p), as `instruments.signals` drives it), a readout that puts
    a |0⟩ shot in the second blob with probability a and a |1⟩ shot with b measures
    w0 = a + c·p and w1 − w0 = c·q·(1 − 2p), c = b − a. When at most ε of the |1⟩ shots
    land in the wrong blob (b ≥ 1 − ε), c·(1 − 2p) ≥ 1 − ε − 2·w0, hence
    q ≤ (w1 − w0) / (1 − ε − 2·w0): a misreading readout makes the bound larger, never
    smaller than the q that acts.
    """

    weights: np.ndarray  # (2,): w0 unpulsed, w1 pulsed
    covariance: np.ndarray  # (2, 2)
    used: np.ndarray  # bool over the (flattened) settings: the ones pooled ...
    each: np.ndarray  # (used, 2): ... and their own weights, named alike

    def _ratio(self, readout_error: float) -> tuple[float, float, float, float, float]:
        """(numerator, denominator, their variances and covariance) of the bound on q."""
        (w0, w1), c = self.weights, self.covariance
        numerator, denominator = w1 - w0, 1.0 - readout_error - 2.0 * w0
        var_n = c[0, 0] + c[1, 1] - 2.0 * c[0, 1]
        var_d = 4.0 * c[0, 0]
        cov = 2.0 * (c[0, 0] - c[0, 1])
        return numerator, denominator, var_n, var_d, cov

    def estimate(self, readout_error: float) -> tuple[float, float]:
        """The bound on q as a value ± stderr (delta method); nan without a thermal asymmetry."""
        n, d, var_n, var_d, cov = self._ratio(readout_error)
        if not d > 0:
            return float("nan"), float("nan")
        q = n / d
        variance = (var_n - 2.0 * q * cov + q**2 * var_d) / d**2
        return float(q), float(np.sqrt(max(variance, 0.0)))

    def upper_bound(self, sigmas: float, readout_error: float) -> float:
        """Largest q the data allow at `sigmas` (Fieller's interval for the ratio, exact for
        Gaussian weights however close the denominator is to zero); ∞ when the thermal
        asymmetry 1 − ε − 2·w0 is not itself that significant (then any q fits)."""
        n, d, var_n, var_d, cov = self._ratio(readout_error)
        z2 = sigmas**2
        a = d**2 - z2 * var_d
        if not (d > 0 and a > 0):
            return float("inf")
        b = n * d - z2 * cov
        c = n**2 - z2 * var_n
        return float((b + np.sqrt(max(b * b - a * c, 0.0))) / a)


def pulse_transfer(mixture: BlobMixture, sigmas: float) -> PulseTransfer | None:
    """The π pulse's effect pooled over the settings where the blobs are resolved and the
    thermal asymmetry names the blobs beyond doubt (|1 − 2·w0| at least `sigmas` standard
    errors: the labels are the fit's arbitrary choice, and where they are a toss-up, naming
    them by the sample would bias the pooled asymmetry). Weighted by each setting's inverse
    covariance; None when no setting qualifies (a cold qubit shows no thermal blob)."""
    weights = mixture.weights.reshape(-1, 2)
    covariance = mixture.weights_covariance.reshape(-1, 2, 2)
    resolved = (mixture.snr.reshape(-1) >= RESOLVED_SNR) & np.all(
        np.isfinite(covariance), axis=(1, 2)
    )
    asymmetry = np.abs(1.0 - 2.0 * weights[:, 0])
    named = asymmetry >= sigmas * 2.0 * np.sqrt(np.abs(covariance[:, 0, 0]))
    use = resolved & named
    if not use.any():
        return None
    weights = np.where(weights[use, :1] > 0.5, 1.0 - weights[use], weights[use])
    try:
        information = np.linalg.inv(covariance[use])
        total = np.linalg.inv(information.sum(axis=0))
    except np.linalg.LinAlgError:
        return None
    pooled = total @ np.einsum("kij,kj->i", information, weights)
    return PulseTransfer(pooled, total, use, weights)


def _contradicts_populations(snr: np.ndarray, w: np.ndarray, shots: np.ndarray) -> np.ndarray:
    """Settings whose blob weights differ from those common to the resolved settings by more
    than `_POPULATION_SIGMAS` binomial standard errors (each state's weights compared after
    naming the blob the π pulse fills the second, as the labels are arbitrary).

    Why: a shot population outside the two blobs (a thermally populated |2⟩, whose dressed
    line lies elsewhere in the sweep) can be far from both where |0⟩ and |1⟩ overlap; the
    mixture then gives those few shots a blob of their own (weights 0.996, a "separation"
    of 30 noise widths, with a stderr of its few shots: sampled chip 5018's far wing, which
    made the separation fit's χ² 70). The preparation fixes the weights at every readout
    setting: their median over the resolved ones, each counted by the shots its smaller blob
    holds (a handful in such a fit, half of all in a real one), is unmoved by such fits even
    where they are most of the sweep.
    """
    oriented = np.where((w[..., 1] < w[..., 0])[..., None], 1 - w, w)
    resolved = snr >= RESOLVED_SNR
    if not resolved.any():
        return np.zeros(snr.shape, bool)
    pooled = oriented[resolved] @ shots / shots.sum()
    held = np.minimum(pooled, 1 - pooled) * shots.sum()  # shots the smaller blob holds
    common = np.array([_weighted_median(column, held) for column in oriented[resolved].T])
    stderr = np.sqrt(common * (1 - common) / shots)
    return np.any(np.abs(oriented - common) > _POPULATION_SIGMAS * stderr, axis=-1)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value below and above which half the total weight lies."""
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


@dataclass(frozen=True)
class _Shots:
    """Shots of settings (rows) as the EM iterations use them: the quadratures as separate
    real arrays and the sums that do not change, so that each iteration is a few passes of
    multiply-and-add over the shots (the mixture of a 32 000-shot sweep is otherwise most of
    the node's processor time)."""

    real: np.ndarray  # (settings, shots)
    imag: np.ndarray
    first: int  # the first this many shots are the first prepared state's
    total: np.ndarray  # (settings,) complex: Σx
    power: np.ndarray  # (settings,): Σ|x|²

    @classmethod
    def of(cls, x: np.ndarray, first: int) -> _Shots:
        x = x.reshape(-1, x.shape[-1])
        real, imag = np.ascontiguousarray(x.real), np.ascontiguousarray(x.imag)
        power = np.einsum("ij,ij->i", real, real) + np.einsum("ij,ij->i", imag, imag)
        return cls(real, imag, first, x.sum(-1), power)

    def rows(self, rows: np.ndarray) -> _Shots:
        return _Shots(
            self.real[rows], self.imag[rows], self.first, self.total[rows], self.power[rows]
        )


def _expectation_maximisation(
    shots: _Shots, resp: np.ndarray, iterations: int
) -> tuple[np.ndarray, np.ndarray]:
    """Responsibilities (settings, shots) iterated until they change by < 1e-7 or
    `iterations` are done, and which settings converged. A converged setting is left alone:
    the unresolved ones of a sweep (its wings) run all the iterations, and they alone need
    not carry the rest."""
    resp = resp.copy()
    converged = np.zeros(len(resp), bool)
    active, subset, current = np.arange(len(resp)), shots, resp
    for _ in range(iterations):
        updated = _responsibility(subset, *_mixture_step(subset, current))
        done = np.max(np.abs(updated - current), axis=-1) < 1e-7
        current = updated
        if done.any():
            resp[active], converged[active] = current, done
            active, subset, current = active[~done], subset.rows(~done), current[~done]
            if not active.size:
                break
    resp[active] = current
    return resp, converged


def _mixture_step(shots: _Shots, resp: np.ndarray):
    """M step: centres, shared variance per quadrature and each state's second-blob weight.
    The spread about the centres is Σ|x|² − S0·|μ0|² − S1·|μ1|² for the blobs' shares Sk."""
    eps = 1e-12
    n = resp.shape[-1]
    held = np.stack([resp[:, : shots.first].sum(-1), resp[:, shots.first :].sum(-1)], axis=-1)
    share1 = held.sum(-1)
    share0 = n - share1
    moment = np.einsum("ij,ij->i", resp, shots.real) + 1j * np.einsum("ij,ij->i", resp, shots.imag)
    mu1 = moment / np.maximum(share1, eps)
    mu0 = (shots.total - moment) / np.maximum(share0, eps)
    spread = shots.power - share0 * np.abs(mu0) ** 2 - share1 * np.abs(mu1) ** 2
    var = np.maximum(spread / n / 2, eps)
    w = held / np.array([shots.first, n - shots.first])
    return mu0, mu1, var, np.clip(w, 1e-9, 1 - 1e-9)


def _responsibility(shots: _Shots, mu0, mu1, var, w) -> np.ndarray:
    """E step: each shot's probability of belonging to the second blob, a logistic function
    of its projection on μ1 − μ0 (the two blobs share their width): the log-odds are
    Re(x·conj(μ1 − μ0))/σ² − (|μ1|² − |μ0|²)/2σ² + log(w/(1 − w))."""
    delta = mu1 - mu0
    log_odds = shots.real * (delta.real / var)[:, None]
    log_odds += shots.imag * (delta.imag / var)[:, None]
    offset = np.log(w / (1 - w)) - ((np.abs(mu1) ** 2 - np.abs(mu0) ** 2) / (2 * var))[:, None]
    log_odds[:, : shots.first] += offset[:, :1]
    log_odds[:, shots.first :] += offset[:, 1:]
    return expit(log_odds, out=log_odds)


def _mixture_covariance(x, resp, mu0, mu1, var, w, is_first) -> np.ndarray:
    """Covariance of the 7 parameters (μ0, μ1 as re/im, the variance, each state's weight),
    the inverse of the per-shot scores' outer product; nan where that is singular."""
    r0, r1 = 1 - resp, resp
    v = var[..., None]
    d0, d1 = x - mu0[..., None], x - mu1[..., None]
    weight = np.where(is_first, w[..., :1], w[..., 1:])
    w_score = r1 / weight - r0 / (1 - weight)
    scores = np.stack(
        [
            r0 * d0.real / v,
            r0 * d0.imag / v,
            r1 * d1.real / v,
            r1 * d1.imag / v,
            (r0 * np.abs(d0) ** 2 + r1 * np.abs(d1) ** 2) / (2 * v**2) - 1 / v,
            np.where(is_first, w_score, 0.0),
            np.where(is_first, 0.0, w_score),
        ],
        axis=-2,
    )
    information = scores @ np.swapaxes(scores, -1, -2)
    try:
        return np.linalg.inv(information)
    except np.linalg.LinAlgError:
        return np.full(information.shape, np.nan)


def _separation_stderr(covariance: np.ndarray, difference: np.ndarray) -> np.ndarray:
    """Standard error of |μ1 − μ0| by the delta method."""
    unit = difference / np.maximum(np.abs(difference), 1e-300)
    zero = np.zeros_like(unit.real)
    gradient = np.stack([-unit.real, -unit.imag, unit.real, unit.imag, zero, zero, zero], -1)
    variance = np.einsum("...i,...ij,...j->...", gradient, covariance, gradient)
    return np.sqrt(np.where(variance > 0, variance, np.nan))
