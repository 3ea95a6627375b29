"""What the digitiser records: qubit populations after a pulse sequence, turned into IQ.

The chain for one sweep, evaluated for all points at once (numpy broadcasting, never a Python
loop over points):

1. thermal populations at the device temperature (a few-hundred-MHz fluxonium is ~30–40 %
   excited at 20 mK), optionally heralded by a pre-measurement that keeps shots read as 0;
2. the pulse sequence, given as data (`instruments/pulses.py`) and recognised as one of the
   patterns the model solves in closed form: a continuous tone (steady state with power
   broadening, every transition out of levels 0 and 1), one pulse (Rabi) optionally followed
   by a wait (T1), two pulses around a wait (Ramsey, with detuning, T2 decay and the second
   pulse's phase), three pulses with equal waits (echo; the refocusing pulse is taken as
   ideal). Gaussian envelopes act as the square pulse of equal area (exact on resonance);
   any other sequence is refused with the list of what the simulator models;
3. readout: each level pulls the resonator to its own dressed frequency; the line adds its
   delay, gain and mismatch; strong tones saturate and cause measurement-induced flips; an
   excited qubit decays during the integration (tails between IQ blobs);
4. finite shots: multinomial projection noise and Gaussian amplifier noise on I and Q.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from fluxcal.instruments.physics import LevelData, QubitPhysics
from fluxcal.instruments.pulses import (
    SEQUENCES,
    PulseSequence,
    ResolvedPulse,
    Wait,
    named,
    resolve,
    trailing_wait,
)

__all__ = ["SEQUENCES", "PulseSettings", "ReadoutSettings", "averaged_iq", "single_shot_iq"]
#: Measurement-induced transition probability per microsecond at the critical amplitude.
_MIT_PER_US = 0.01


@dataclass(frozen=True)
class PulseSettings:
    """The drive side of one sweep; any number may be an array over sweep points.

    `sequence` is the pulse sequence as data, or a library name (`instruments.pulses`);
    amplitude, duration and delay are the channel settings its elements are relative to.
    The sequence's herald flag and `herald` are the same switch: either turns it on.
    """

    sequence: PulseSequence | str
    frequency: np.ndarray | float
    amplitude: np.ndarray | float
    duration: np.ndarray | float
    delay: np.ndarray | float
    herald: bool = False

    def __post_init__(self) -> None:
        sequence = self.sequence
        if isinstance(sequence, str):
            sequence = named(sequence)
        herald = bool(self.herald or sequence.herald)
        object.__setattr__(self, "sequence", sequence.with_herald(herald))
        object.__setattr__(self, "herald", herald)


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


#: Envelope area of a gaussian spanning its duration as ±2σ, relative to a square pulse.
_GAUSSIAN_AREA = 0.25 * np.sqrt(2 * np.pi) * 0.9544997361036416
_MODELLED = (
    "no pulse, one continuous tone, one pulse (+ a wait), two equal pulses around a wait, "
    "or three pulses with two equal waits"
)


def _area_amplitude(pulse: ResolvedPulse) -> np.ndarray:
    """Amplitude of the square pulse of the same duration and area."""
    amplitude = np.asarray(pulse.amplitude)
    return _GAUSSIAN_AREA * amplitude if pulse.shape == "gaussian" else amplitude


def apply_sequence(
    physics: QubitPhysics, levels: LevelData, populations: np.ndarray, pulse: PulseSettings
) -> np.ndarray:
    """Level populations when the readout starts."""
    sequence = pulse.sequence
    pulses = resolve(sequence, pulse.amplitude, pulse.duration, pulse.delay)
    continuous = [p for p in pulses if p.shape == "continuous"]
    if not pulses:
        return populations
    if continuous:
        if len(pulses) > 1:
            raise ValueError(f"the simulator models a continuous tone alone; it models {_MODELLED}")
        return _saturate(physics, levels, populations, pulse.frequency, continuous[0].amplitude)
    ends_with_wait = isinstance(sequence.elements[-1], Wait)
    if len(pulses) == 1:
        first = pulses[0]
        flip = _rabi_flip(physics, levels, _area_amplitude(first), first.duration, pulse.frequency)
        driven = _transfer(populations, 0, 1, flip)
        if not ends_with_wait:
            return driven
        delay = np.asarray(trailing_wait(sequence, pulse.delay))
        return _relax(physics, populations, driven, delay)
    if len(pulses) in (2, 3) and not ends_with_wait:
        return _interfere(physics, levels, populations, pulse.frequency, pulses)
    raise ValueError(f"the simulator cannot model this pulse sequence; it models {_MODELLED}")


def _saturate(physics, levels, populations, frequency, amplitude) -> np.ndarray:
    """Steady state of a long tone: a power-broadened Lorentzian per transition."""
    t1 = physics.t1
    t2 = physics.t2(levels.spectrum.flux)
    n_levels = populations.shape[-1]
    for i in (0, 1):
        for j in range(i + 1, n_levels):
            rabi = physics.rabi_frequency(amplitude, levels, i, j)
            saturation = (2 * np.pi * rabi) ** 2 * t1 * t2
            detuning = np.asarray(frequency) - levels.transition_hz(i, j)
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


def _interfere(physics, levels, populations, frequency, pulses) -> np.ndarray:
    """Ramsey (two equal pulses around a wait) or echo (a refocusing pulse, taken as ideal,
    between two equal waits): fringe or decay. The second Ramsey pulse's phase shifts the
    fringe; the outer pulses' flip sets the contrast."""
    first, last = pulses[0], pulses[-1]
    if not (np.array_equal(first.amplitude, last.amplitude) and first.shape == last.shape):
        raise ValueError("the simulator models Ramsey and echo with equal outer pulses")
    echo = len(pulses) == 3
    if echo and not np.array_equal(pulses[1].wait_before, last.wait_before):
        raise ValueError("the simulator models an echo with its refocusing pulse mid-way")
    if echo and first.phase != last.phase:
        raise ValueError("the simulator models an echo with its outer pulses in phase")
    flux = levels.spectrum.flux
    delay = sum((np.asarray(p.wait_before) for p in pulses[1:]), start=np.asarray(0.0))
    half = _rabi_flip(physics, levels, _area_amplitude(first), first.duration, frequency)
    contrast = 4 * half * (1 - half)
    weight = populations[..., 0] + populations[..., 1]
    polarisation = populations[..., 0] - populations[..., 1]
    decay = np.exp(-delay / physics.t2(flux, echo=echo))
    if echo:
        fringe = -decay
    else:
        detuning = np.asarray(frequency) - levels.transition_hz(0, 1)
        fringe = decay * np.cos(2 * np.pi * detuning * delay - (last.phase - first.phase))
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
