"""What the digitiser records: qubit populations after a pulse sequence, turned into IQ.

The chain for one sweep, evaluated for all points at once (numpy broadcasting, never a Python
loop over points):

1. thermal populations at the device temperature (a few-hundred-MHz fluxonium is ~30–40 %
   excited at 20 mK), optionally heralded by a pre-measurement that keeps shots read as 0;
2. the pulse sequence: saturation tone (steady state with power broadening, every transition
   out of levels 0 and 1), Rabi, Ramsey with detuning and T2 decay, echo, T1 delay;
3. readout: each level pulls the resonator to its own dressed frequency; the line adds its
   delay, gain and mismatch; strong tones saturate and cause measurement-induced flips; an
   excited qubit decays during the integration (tails between IQ blobs);
4. finite shots: multinomial projection noise and Gaussian amplifier noise on I and Q.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from instruments.physics import LevelData, QubitPhysics

SEQUENCES = ("none", "saturation", "rabi", "ramsey", "echo", "t1")
#: Measurement-induced transition probability per microsecond at the critical amplitude.
_MIT_PER_US = 0.01


@dataclass(frozen=True)
class PulseSettings:
    """The drive side of one sweep; any field may be an array over sweep points."""

    sequence: str
    frequency: np.ndarray | float
    amplitude: np.ndarray | float
    duration: np.ndarray | float
    delay: np.ndarray | float
    herald: bool = False


@dataclass(frozen=True)
class ReadoutSettings:
    """The readout side of one sweep; frequency/amplitude/duration may be arrays."""

    frequency: np.ndarray | float
    amplitude: np.ndarray | float
    duration: np.ndarray | float
    shots: int


@dataclass(frozen=True)
class ReadoutResponse:
    """Mean IQ of each level without decay, and the per-shot noise, shape (..., levels)."""

    iq: np.ndarray
    sigma: np.ndarray
    decay_weight: np.ndarray  # mean fraction of the integration an excited qubit stays up
    flip_probability: np.ndarray  # measurement-induced 0↔1 flips during the integration


def line_response(physics: QubitPhysics, frequency: np.ndarray, resonance: np.ndarray):
    """S21 of the resonator as the digitiser sees it: notch with delay, gain, mismatch."""
    resonator = physics.config.resonator
    env = resonator.environment
    detuning = frequency - resonance
    notch = 1.0 - resonator.coupling_ratio * np.exp(1j * env.mismatch) / (
        1.0 + 2j * detuning / resonator.kappa
    )
    line = env.gain * np.exp(1j * (env.phase - 2 * np.pi * frequency * env.delay))
    return line * notch


def readout_response(
    physics: QubitPhysics, levels: LevelData, readout: ReadoutSettings
) -> ReadoutResponse:
    frequency = np.asarray(readout.frequency, float)[..., None]
    amplitude = np.asarray(readout.amplitude, float)
    duration = np.asarray(readout.duration, float)
    spec = physics.config.readout
    effective = amplitude / np.sqrt(1.0 + (amplitude / spec.saturation_amplitude) ** 2)
    iq = effective[..., None] * line_response(physics, frequency, levels.resonator_hz)
    sigma = spec.noise / np.sqrt(duration)
    ratio = duration / physics.t1
    decay_weight = np.where(ratio > 1e-9, (1 - np.exp(-ratio)) / np.maximum(ratio, 1e-12), 1.0)
    flips = _MIT_PER_US * (amplitude / spec.critical_amplitude) ** 2 * duration / 1e-6
    return ReadoutResponse(iq, sigma, decay_weight, np.minimum(flips, 0.5))


def _transfer(populations: np.ndarray, i: int, j: int, fraction: np.ndarray) -> np.ndarray:
    """Move `fraction` of the population difference p_i − p_j from level i to level j."""
    moved = fraction * (populations[..., i] - populations[..., j])
    populations = populations.copy()
    populations[..., i] -= moved
    populations[..., j] += moved
    return populations


def _rabi_flip(physics, levels, amplitude, duration, frequency) -> np.ndarray:
    """Probability that a rectangular pulse flips 0↔1, with detuning."""
    rabi = physics.rabi_frequency(amplitude, levels)
    detuning = np.asarray(frequency) - levels.transition_hz(0, 1)
    generalised = np.sqrt(rabi**2 + detuning**2)
    return rabi**2 / np.maximum(generalised**2, 1e-30) * np.sin(np.pi * generalised * duration) ** 2


def herald(populations: np.ndarray, response: ReadoutResponse) -> tuple[np.ndarray, np.ndarray]:
    """Post-select shots whose pre-measurement read 0; returns (populations, acceptance).

    The herald thresholds halfway between the 0 and 1 responses, so a level-1 shot passes
    with the Gaussian overlap probability; higher levels are told apart as well as level 1.
    """
    separation = np.abs(response.iq[..., 1] - response.iq[..., 0])
    error = ndtr(-separation / (2 * response.sigma))
    passing = np.full(populations.shape, 1.0) * error[..., None]
    passing[..., 0] = 1.0 - error
    kept = populations * passing
    acceptance = kept.sum(axis=-1)
    return kept / acceptance[..., None], acceptance


def apply_sequence(
    physics: QubitPhysics, levels: LevelData, populations: np.ndarray, pulse: PulseSettings
) -> np.ndarray:
    """Level populations when the readout starts."""
    sequence = pulse.sequence
    if sequence == "none":
        return populations
    if sequence == "saturation":
        return _saturate(physics, levels, populations, pulse)
    if sequence in ("rabi", "t1"):
        flip = _rabi_flip(physics, levels, pulse.amplitude, pulse.duration, pulse.frequency)
        driven = _transfer(populations, 0, 1, flip)
        if sequence == "rabi":
            return driven
        return _relax(physics, populations, driven, np.asarray(pulse.delay))
    if sequence in ("ramsey", "echo"):
        return _interfere(physics, levels, populations, pulse)
    raise ValueError(f"unknown pulse sequence {sequence!r}; known: {', '.join(SEQUENCES)}")


def _saturate(physics, levels, populations, pulse) -> np.ndarray:
    """Steady state of a long tone: a power-broadened Lorentzian per transition."""
    t1 = physics.t1
    t2 = physics.t2(levels.spectrum.flux)
    n_levels = populations.shape[-1]
    for i in (0, 1):
        for j in range(i + 1, n_levels):
            rabi = physics.rabi_frequency(pulse.amplitude, levels, i, j)
            saturation = (2 * np.pi * rabi) ** 2 * t1 * t2
            detuning = np.asarray(pulse.frequency) - levels.transition_hz(i, j)
            fraction = 0.5 * saturation / (1 + saturation + (2 * np.pi * detuning * t2) ** 2)
            populations = _transfer(populations, i, j, fraction)
    return populations


def _relax(physics, thermal, driven, delay) -> np.ndarray:
    """T1 relaxation of the 0/1 subspace back to its thermal ratio during a delay."""
    weight = driven[..., 0] + driven[..., 1]
    ratio = thermal[..., 1] / (thermal[..., 0] + thermal[..., 1])
    excited = weight * ratio + (driven[..., 1] - weight * ratio) * np.exp(-delay / physics.t1)
    relaxed = driven.copy()
    relaxed[..., 1] = excited
    relaxed[..., 0] = weight - excited
    return relaxed


def _interfere(physics, levels, populations, pulse) -> np.ndarray:
    """Ramsey (two π/2 pulses at amplitude/2) or echo (π in the middle): fringe or decay."""
    flux = levels.spectrum.flux
    echo = pulse.sequence == "echo"
    delay = np.asarray(pulse.delay)
    half = _rabi_flip(
        physics, levels, np.asarray(pulse.amplitude) / 2, pulse.duration, pulse.frequency
    )
    contrast = 4 * half * (1 - half)
    weight = populations[..., 0] + populations[..., 1]
    polarisation = populations[..., 0] - populations[..., 1]
    decay = np.exp(-delay / physics.t2(flux, echo=echo))
    if echo:
        fringe = -decay
    else:
        detuning = np.asarray(pulse.frequency) - levels.transition_hz(0, 1)
        fringe = decay * np.cos(2 * np.pi * detuning * delay)
    result = populations.copy()
    result[..., 1] = 0.5 * (weight + contrast * polarisation * fringe)
    result[..., 0] = weight - result[..., 1]
    return result


def _expand(value, shape) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, float), shape)


def prepare(
    physics: QubitPhysics, flux_voltage, pulse: PulseSettings, readout: ReadoutSettings
) -> tuple[np.ndarray, ReadoutResponse, np.ndarray]:
    """Populations at readout, the readout response and the heralding acceptance."""
    shape = np.broadcast_shapes(
        *(
            np.shape(v)
            for v in (
                flux_voltage,
                pulse.frequency,
                pulse.amplitude,
                pulse.duration,
                pulse.delay,
                readout.frequency,
                readout.amplitude,
                readout.duration,
            )
        )
    )
    flux_voltage = _expand(flux_voltage, shape)
    flux = physics.flux(flux_voltage)
    unique, inverse = np.unique(flux, return_inverse=True)
    computed = physics.levels(unique)
    levels = LevelData(
        _take_spectrum(computed, inverse.reshape(shape)),
        computed.energies_hz[inverse].reshape((*shape, -1)),
        computed.resonator_hz[inverse].reshape((*shape, -1)),
        computed.populations[inverse].reshape((*shape, -1)),
    )
    response = readout_response(
        physics,
        levels,
        ReadoutSettings(
            _expand(readout.frequency, shape),
            _expand(readout.amplitude, shape),
            _expand(readout.duration, shape),
            readout.shots,
        ),
    )
    populations = levels.populations
    acceptance = np.ones(shape)
    if pulse.herald:
        populations, acceptance = herald(populations, response)
    populations = apply_sequence(physics, levels, populations, pulse)
    return np.clip(populations, 0.0, 1.0), response, acceptance


def _take_spectrum(levels: LevelData, index: np.ndarray):
    spectrum = levels.spectrum
    return type(spectrum)(
        spectrum.flux[index],
        spectrum.energies[index],
        spectrum.vectors[index],
        spectrum.n_matrix[index],
        spectrum.phi_matrix[index],
    )


def _level_means(response: ReadoutResponse) -> np.ndarray:
    """Mean IQ per level including decay of level 1 and measurement-induced flips."""
    iq = response.iq.copy()
    w = response.decay_weight
    flip = response.flip_probability
    ground, excited = iq[..., 0], iq[..., 1]
    excited_mean = w * excited + (1 - w) * ground
    iq[..., 0] = (1 - flip / 2) * ground + flip / 2 * excited_mean
    iq[..., 1] = (1 - flip / 2) * excited_mean + flip / 2 * ground
    return iq


def averaged_iq(
    physics: QubitPhysics,
    flux_voltage,
    pulse: PulseSettings,
    readout: ReadoutSettings,
    rng: np.random.Generator,
) -> np.ndarray:
    """Averaged complex IQ per sweep point (V) from `readout.shots` shots each."""
    populations, response, acceptance = prepare(physics, flux_voltage, pulse, readout)
    kept = rng.binomial(readout.shots, np.clip(acceptance, 0, 1))
    kept = np.maximum(kept, 1)
    populations = populations / populations.sum(axis=-1, keepdims=True)
    counts = rng.multinomial(kept, populations)
    means = _level_means(response)
    signal = (counts * means).sum(axis=-1) / kept
    noise_scale = response.sigma / np.sqrt(kept)
    noise = rng.standard_normal(signal.shape) + 1j * rng.standard_normal(signal.shape)
    return signal + noise_scale * noise


def single_shot_iq(
    physics: QubitPhysics,
    flux_voltage,
    pulse: PulseSettings,
    readout: ReadoutSettings,
    rng: np.random.Generator,
) -> np.ndarray:
    """Single-shot complex IQ, shape (sweep points..., shots): the blobs and their tails."""
    populations, response, _ = prepare(physics, flux_voltage, pulse, readout)
    shots = readout.shots
    populations = populations / populations.sum(axis=-1, keepdims=True)
    cumulative = np.cumsum(populations, axis=-1)[..., None, :]
    draws = rng.random((*populations.shape[:-1], shots, 1))
    level = np.minimum((draws > cumulative).sum(axis=-1), populations.shape[-1] - 1)
    iq_levels = response.iq[..., None, :]
    shot_iq = np.take_along_axis(iq_levels, level[..., None], axis=-1)[..., 0]
    duration = np.asarray(readout.duration, float)
    duration = np.broadcast_to(duration, populations.shape[:-1])[..., None]
    ground = iq_levels[..., 0]
    excited = iq_levels[..., 1]
    decay_time = rng.exponential(physics.t1, level.shape)
    up_fraction = np.minimum(decay_time / duration, 1.0)
    decayed = up_fraction * excited + (1 - up_fraction) * ground
    shot_iq = np.where(level == 1, decayed, shot_iq)
    flips = rng.random(level.shape) < response.flip_probability[..., None]
    flip_at = rng.random(level.shape)
    flipped_from_0 = flip_at * ground + (1 - flip_at) * excited
    flipped_from_1 = flip_at * excited + (1 - flip_at) * ground
    shot_iq = np.where(flips & (level == 0), flipped_from_0, shot_iq)
    shot_iq = np.where(flips & (level == 1), flipped_from_1, shot_iq)
    sigma = response.sigma[..., None]
    noise = rng.standard_normal(shot_iq.shape) + 1j * rng.standard_normal(shot_iq.shape)
    return shot_iq + sigma * noise
