"""Monitoring as code, shipped with fluxcal: Prometheus alert rules and a Grafana dashboard.

`alerts.yml` is a Prometheus rule file over the metrics of `fluxcal metrics`;
`dashboard.json` a Grafana dashboard (executive, on-call and per-qubit rows) over the same.
`path(name)` finds them in an installed fluxcal, e.g. to copy them into a Prometheus or
Grafana provisioning folder (docs/operations.md).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

ALERT_RULES = "alerts.yml"
DASHBOARD = "dashboard.json"


def path(name: str) -> Path:
    """Where the installed file `name` (ALERT_RULES or DASHBOARD) is."""
    return Path(str(files(__name__) / name))
