"""fluxcal: automated calibration of superconducting qubits, fluxonium first."""

__version__ = "0.1.0"
