"""Calibrated values as a person reads them: SI prefix, and digits down to the uncertainty.

`%g` prints six significant digits whatever was measured: a qubit frequency known to 40 Hz
loses its last four digits, a π amplitude known to 1 % shows four digits of noise. Here the
value is printed to the decimal place of its standard error's second significant digit, with
the stderr beside it, in the prefix that suits the value.
"""

from __future__ import annotations

import math

#: Units that take SI prefixes; others (dimensionless, radians) are printed as they are.
_PREFIXED = ("Hz", "s", "V", "A", "W", "Φ0")
_PREFIXES = ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))
#: Most decimals a value is printed with (a zero or denormal stderr).
_MAX_DECIMALS = 12


def quantity(value: float, stderr: float, unit: str) -> str:
    """`value ± stderr unit`, e.g. `6.9997918 ± 0.0000014 GHz`; `-` for no value."""
    if value is None or not math.isfinite(value):
        return "-"
    scale, prefix = _prefix(value, unit)
    scaled = value / scale
    known = stderr is not None and math.isfinite(stderr) and stderr > 0
    if not known:
        text = f"{scaled:.6g}"
    else:
        decimals = 1 - math.floor(math.log10(stderr / scale))
        decimals = min(max(decimals, 0), _MAX_DECIMALS)
        text = f"{scaled:.{decimals}f} ± {stderr / scale:.{decimals}f}"
    return f"{text} {prefix}{unit}".rstrip()


def _prefix(value: float, unit: str) -> tuple[float, str]:
    if unit not in _PREFIXED or value == 0:
        return 1.0, ""
    return next(((s, p) for s, p in _PREFIXES if abs(value) >= s), _PREFIXES[-1])
