"""Plain-text tables for the terminal: calibrated parameters, optionally beside the truth."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snapshots import CalibratedParameter


def _number(value: float) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.6g}"


def parameter_table(
    parameters: dict[str, dict[str, CalibratedParameter]],
    truth: dict[str, dict[str, float]] | None = None,
) -> str:
    header = ["qubit", "parameter", "value", "stderr", "unit", "experiment"]
    if truth is not None:
        header += ["truth", "error"]
    rows = [header]
    for qubit, params in parameters.items():
        for name, p in sorted(params.items()):
            row = [qubit, name, _number(p.value), _number(p.stderr), p.unit, p.experiment]
            if truth is not None:
                true = truth.get(qubit, {}).get(name)
                row += [_number(true), _number(p.value - true) if true is not None else "-"]
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
