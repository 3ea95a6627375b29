"""What a flow run shows in the Prefect UI: parameter tables, fit reports with plots, decisions.

Content is built by pure functions (tested without a server) and published by the `publish_*`
helpers, which must run inside a flow or task run so Prefect links the artifact to it. Fit
plots are embedded in the markdown as `data:image/png;base64,...`: the UI renders them with
no file server, offline. Artifact keys (lowercase, digits, dashes) make each report show in
the UI's Artifacts page with its history across runs, e.g. `q0-rabi-fit`.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxcal.calibrations.node import UNITS
from fluxcal.calibrations.plotting import format_value
from fluxcal.calibrations.runner import NodeResult
from fluxcal.snapshots import CalibratedParameter, SnapshotStore, StoreError

if TYPE_CHECKING:  # Prefect is imported when an artifact is made, not with this module
    from prefect.client.schemas.actions import ArtifactCreate

Parameters = Mapping[str, Mapping[str, CalibratedParameter]]
#: Measurements per parameter in the daily run's trend artifact.
TREND_VERSIONS = 30


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key from names like ("q0", "qubit_spectroscopy", "fit")."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def number(value: float | None, digits: int = 7) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def fit_report_markdown(result: NodeResult) -> str:
    """One node's report: outcome and reason, plot, fitted values, gate criteria, fit details."""
    lines = [
        f"## {result.qubit} · {result.node} — {result.outcome}",
        "",
        f"**Gate:** {result.reason}",
        "",
        f"Acquisition {result.acquire_s:.2f} s, analysis {result.analyse_s:.2f} s, "
        f"device time {result.device_s:.1f} s, finished {result.finished or '–'}.",
    ]
    if result.plot is not None and Path(result.plot).is_file():
        lines += ["", f"![{result.qubit} {result.node} fit]({png_data_uri(result.plot)})"]
    analysis = result.analysis
    if analysis is not None and analysis.values:
        lines += ["", "| value | fitted | unit | handed on |", "|---|---|---|---|"]
        for name, (value, stderr) in analysis.values.items():
            handed = "yes" if name in result.parameters else "no"
            lines.append(
                f"| {name} | {format_value(value, stderr)} | {UNITS.get(name, '')} | {handed} |"
            )
    if analysis is not None and analysis.criteria:
        lines += ["", "| criterion | value | needs | result |", "|---|---|---|---|"]
        for c in analysis.criteria:
            sign = "≤" if c.kind == "max" else "≥"
            verdict = "pass" if c.passed else "**FAIL**"
            lines.append(f"| {c.name} | {number(c.value, 4)} | {sign} {c.limit:.4g} | {verdict} |")
    if analysis is not None and analysis.report:
        lines += ["", "```text", analysis.report.strip(), "```"]
    return "\n".join(lines)


def parameter_rows(
    previous: Parameters, current: Parameters, results: Mapping[str, Mapping[str, NodeResult]]
) -> list[dict[str, Any]]:
    """One row per calibrated parameter of the qubits a run touched, with its change since
    the previous snapshot and what this run's producing node concluded."""
    rows = []
    for qubit, nodes in results.items():
        handed_on = {name: r.node for r in nodes.values() for name in r.parameters}
        tried = {
            name: r
            for r in nodes.values()
            if r.analysis is not None
            for name in r.analysis.values
            if name not in handed_on
        }
        for name, p in sorted(current.get(qubit, {}).items()):
            old = previous.get(qubit, {}).get(name)
            if name in handed_on:
                outcome = f"accepted ({handed_on[name]})"
            elif name in tried:
                outcome = f"{tried[name].outcome} ({tried[name].node}): kept previous"
            else:
                outcome = "not run: kept previous"
            rows.append(
                {
                    "qubit": qubit,
                    "parameter": name,
                    "value": number(p.value),
                    "stderr": number(p.stderr, 2),
                    "unit": p.unit,
                    "change": _change(old, p),
                    "outcome": outcome,
                    "previous": number(old.value) if old else "–",
                    "updated": p.updated,
                }
            )
    return rows


def _change(old: CalibratedParameter | None, new: CalibratedParameter) -> str:
    if old is None:
        return "new"
    delta = new.value - old.value
    if delta == 0:
        return "0"
    combined = math.hypot(old.stderr, new.stderr)
    sigma = f" ({delta / combined:+.1f}σ)" if math.isfinite(combined) and combined > 0 else ""
    return f"{delta:+.4g}{sigma}"


def outcome_summary_markdown(
    title: str, results: Mapping[str, Mapping[str, NodeResult]], version: int | None
) -> str:
    """Per-qubit outcome of every node, and which snapshot the run wrote."""
    stored = f"snapshot v{version}" if version is not None else "no new snapshot"
    lines = [f"# {title}", "", f"Result: {stored}.", "", "| qubit | node | outcome | reason |"]
    lines.append("|---|---|---|---|")
    for qubit, nodes in results.items():
        for name, r in nodes.items():
            lines.append(f"| {qubit} | {name} | {r.outcome} | {_cell(r.reason)} |")
    return "\n".join(lines)


def decision_rows(maintenance: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per node and qubit of a drift check: state, check, action and why."""
    rows = []
    for qubit, m in maintenance.items():
        for name, d in m.decisions.items():
            check = d.check
            measured = stored = tolerance = "–"
            if check is not None and check.measured:
                key = next(iter(check.measured))
                value, stderr = check.measured[key]
                measured = f"{key} = {number(value)} ± {number(stderr, 2)}"
                if not check.measured_now:
                    measured += " (shared probe)"
                stored = number(check.stored.get(key))
                tolerance = number(check.tolerance.get(key), 3)
            rows.append(
                {
                    "qubit": qubit,
                    "node": name,
                    "action": d.action,
                    "check": check.verdict.replace("_", " ") if check else "no cheap check",
                    "measured": measured,
                    "stored": stored,
                    "tolerance": tolerance,
                    "state": f"{d.state.kind} ({d.state.reason})",
                    "reason": _cell(d.reason),
                    "diagnosis": d.diagnosis or "–",
                    "device time (s)": f"{d.device_s:.1f}",
                }
            )
    return rows


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "/")


def trend_markdown(store: SnapshotStore, last: int = TREND_VERSIONS) -> str:
    """The key parameters' history over the last `last` measurements, as one plot per
    parameter (embedded PNG) and each qubit's latest value, so drift shows at a glance."""
    from fluxcal.trend import KEY_PARAMETERS, trend_png, trends

    try:
        series = trends(store, KEY_PARAMETERS, last=last)
    except StoreError as error:
        return f"# Calibration trends\n\nNo history yet: {error}."
    uri = "data:image/png;base64," + base64.b64encode(trend_png(series)).decode("ascii")
    lines = [
        "# Calibration trends",
        "",
        f"Last {last} measurements of each key parameter (± stderr), by time measured.",
        "",
        f"![trends]({uri})",
        "",
        "| parameter | qubit | latest | measured | version | points |",
        "|---|---|---|---|---|---|",
    ]
    for name, per_qubit in series.items():
        for qubit, points in per_qubit.items():
            p = points[-1].parameter
            latest = f"{format_value(p.value, p.stderr)} {p.unit}".strip()
            lines.append(
                f"| {name} | {qubit} | {latest} | {p.updated} | v{points[-1].version} "
                f"| {len(points)} |"
            )
    return "\n".join(lines)


def publish_trends(store: SnapshotStore, last: int = TREND_VERSIONS) -> None:
    publish_markdown(
        trend_markdown(store, last),
        key=artifact_key("fluxcal", "trends"),
        description=f"T1, T2, f01, fidelity over the last {last} measurements",
    )


def fit_report_request(result: NodeResult) -> ArtifactCreate:
    """The node's fit report as an artifact of the task run (and flow run) this is called in,
    ready to be posted by any client, from any thread."""
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.utilities.context import get_task_and_flow_run_ids

    task_run_id, flow_run_id = get_task_and_flow_run_ids()
    return ArtifactCreate(
        type="markdown",
        key=artifact_key(result.qubit, result.node, "fit"),
        description=f"{result.qubit} {result.node}: {result.outcome}",
        data=fit_report_markdown(result),
        task_run_id=task_run_id,
        flow_run_id=flow_run_id,
    )


def publish_fit_report(result: NodeResult) -> None:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        client.create_artifact(fit_report_request(result))


def publish_table(rows: Iterable[dict[str, Any]], key: str, description: str) -> None:
    from prefect.artifacts import create_table_artifact

    create_table_artifact(list(rows), key=key, description=description)


def publish_markdown(markdown: str, key: str, description: str) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown, key=key, description=description)
