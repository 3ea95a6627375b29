"""Sample calibration content shared by the snapshot tests, the writer helper and the benchmark."""

from __future__ import annotations

import numpy as np
import xarray as xr

from fluxcal.snapshots import CalibratedParameter, ExperimentRecord

UPDATED = "2025-11-25T10:00:00+00:00"

# name -> (value, stderr, unit, experiment): the canonical per-qubit parameters of DESIGN.md
BASE = {
    "readout_frequency": (7.0012e9, 2.0e3, "Hz", "resonator_spectroscopy"),
    "flux_period": (1.25, 1e-3, "V", "resonator_flux"),
    "flux_sweet_spot": (0.312, 2e-4, "V", "resonator_flux"),
    "qubit_frequency": (363.4e6, 5e3, "Hz", "ramsey"),
    "EJ": (8.9e9, 1e7, "Hz", "qubit_flux_spectroscopy"),
    "EC": (2.5e9, 5e6, "Hz", "qubit_flux_spectroscopy"),
    "EL": (0.5e9, 1e6, "Hz", "qubit_flux_spectroscopy"),
    "pi_amplitude": (0.231, 1e-3, "V", "rabi"),
    "T1": (2.1e-4, 1e-5, "s", "t1"),
    "T2_ramsey": (4.0e-5, 3e-6, "s", "ramsey"),
    "T2_echo": (1.5e-4, 8e-6, "s", "echo"),
    "readout_amplitude": (0.05, float("nan"), "V", "readout_optimisation"),
    "readout_duration": (2e-6, float("nan"), "s", "readout_optimisation"),
    "readout_threshold": (0.0012, 1e-5, "", "readout_optimisation"),
    "readout_angle": (0.71, 0.01, "rad", "readout_optimisation"),
    "assignment_fidelity": (0.95, 0.004, "", "readout_optimisation"),
}


def parameters(
    qubits: tuple[str, ...] = ("q0",), shift: float = 0.0
) -> dict[str, dict[str, CalibratedParameter]]:
    """Canonical parameters; `shift` moves every value by that many of its stderrs (or 1e-3)."""
    out = {}
    for q in qubits:
        out[q] = {}
        for name, (value, stderr, unit, exp) in BASE.items():
            step = stderr if np.isfinite(stderr) else abs(value) * 1e-3
            out[q][name] = CalibratedParameter(value + shift * step, stderr, unit, exp, UPDATED)
    return out


def iq_dataset(n: int, seed: int) -> xr.Dataset:
    """Averaged complex IQ trace against delay, the shape most experiments record."""
    rng = np.random.default_rng(seed)
    delay = np.linspace(0.0, 50e-6, n)
    iq = np.exp(-delay / 30e-6) * np.exp(1j * 2 * np.pi * 1e5 * delay)
    iq = iq + 0.01 * (rng.normal(size=n) + 1j * rng.normal(size=n))
    ds = xr.Dataset({"iq": ("delay", iq)}, coords={"delay": ("delay", delay, {"units": "s"})})
    ds["iq"].attrs["units"] = "V"
    return ds


def map_dataset(n_flux: int, n_freq: int, seed: int) -> xr.Dataset:
    """Two-tone spectroscopy against flux: 2-D complex data with two coordinates."""
    rng = np.random.default_rng(seed)
    iq = rng.normal(size=(n_flux, n_freq)) + 1j * rng.normal(size=(n_flux, n_freq))
    return xr.Dataset(
        {"iq": (("flux", "frequency"), iq), "magnitude": (("flux", "frequency"), np.abs(iq))},
        coords={
            "flux": ("flux", np.linspace(-0.1, 0.1, n_flux), {"units": "V"}),
            "frequency": ("frequency", np.linspace(150e6, 450e6, n_freq), {"units": "Hz"}),
        },
        attrs={"shots": 1000, "drive": "qubit"},
    )


def experiments(
    qubits: tuple[str, ...] = ("q0",), n: int = 500, seed: int = 0
) -> dict[str, dict[str, ExperimentRecord]]:
    """Nine experiments per qubit: complex 1-D traces, a real trace, a 41x201 map, no-data."""
    out = {}
    for qi, q in enumerate(qubits):
        recs = {}
        for k, name in enumerate(["rabi", "ramsey", "echo", "t1", "resonator_spectroscopy"]):
            recs[name] = ExperimentRecord(
                data=iq_dataset(n * (k + 1), seed + 10 * qi + k),
                fit={"amplitude": (0.5 + k, 0.01), "offset": (0.1, float("nan"))},
                outcome="accepted",
                reason="fit ok",
                report=f"[[Fit Statistics]]\n    # points = {n * (k + 1)}",
                updated=UPDATED,
            )
        real = iq_dataset(2000, seed + 7).map(np.abs)
        recs["resonator_flux"] = ExperimentRecord(real, {"period": (1.25, 1e-3)}, "accepted", "ok")
        recs["qubit_flux_spectroscopy"] = ExperimentRecord(
            map_dataset(41, 201, seed + qi), {"EJ": (8.9e9, 1e7)}, "accepted", "ok", updated=UPDATED
        )
        recs["readout_optimisation"] = ExperimentRecord(
            iq_dataset(300, seed + 3), {}, "rejected", "fidelity below 0.9"
        )
        recs["drift_check"] = ExperimentRecord(None, {}, "skipped", "not due")
        out[q] = recs
    return out


STATION = {
    "instruments": {
        "flux_source": {"parameters": {"voltage": {"value": 0.312, "unit": "V"}}},
        "digitiser": {"parameters": {"shots": {"value": 1000}}},
    },
    "config": {"simulated": True},
}
