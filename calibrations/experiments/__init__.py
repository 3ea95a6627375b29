"""Calibration experiments: one node per module (acquire, analyse, gate, update)."""
