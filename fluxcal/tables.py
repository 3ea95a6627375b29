"""Plain-text tables for the terminal: calibrated parameters, optionally beside the truth.

Values are printed to their precision with SI prefixes (`snapshots.quantities`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fluxcal.snapshots import CalibratedParameter


def parameter_table(
    parameters: dict[str, dict[str, CalibratedParameter]],
    truth: dict[str, dict[str, float]] | None = None,
) -> str:
    from fluxcal.snapshots.quantities import quantity

    header = ["qubit", "parameter", "value ± stderr", "experiment"]
    if truth is not None:
        header += ["truth", "error"]
    rows = [header]
    for qubit, params in parameters.items():
        for name, p in sorted(params.items()):
            row = [qubit, name, quantity(p.value, p.stderr, p.unit), p.experiment]
            if truth is not None:
                true = truth.get(qubit, {}).get(name)
                error = p.value - true if true is not None else math.nan
                row += [quantity(true, math.nan, p.unit), quantity(error, math.nan, p.unit)]
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
