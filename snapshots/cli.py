"""`fluxcal snapshots ...`: inspect, compare, roll back and verify a snapshot store.

Every command reads the store named by --store (default $FLUXCAL_STORE or ./fluxcal-store)
and prints an aligned table, or JSON with --json. None of them creates a store. Store
errors become one line on stderr and exit code 1 (`fluxcal.failures`), because users read
them, not tracebacks.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from fluxcal.failures import one_line_errors

from .errors import StoreError, UnknownVersion
from .records import CalibratedParameter, ExperimentRecord
from .store import SnapshotStore

app = typer.Typer(help="Versioned calibration snapshots.", no_args_is_help=True)

StoreOption = Annotated[
    Path,
    typer.Option("--store", envvar="FLUXCAL_STORE", help="Snapshot store directory."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DEFAULT_STORE = Path("fluxcal-store")
_PREFIXES = ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))


@app.command("list")
@one_line_errors
def list_versions(store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """List all versions, oldest first; * marks the current one."""
    s = _open(store)
    current = s.current_version()
    infos = s.versions()
    if as_json:
        _print_json([{**dataclasses.asdict(i), "current": i.version == current} for i in infos])
        return
    rows = [
        ["*" if i.version == current else "", i.version, i.parent, i.created, i.reason]
        for i in infos
    ]
    typer.echo(_table(["", "version", "parent", "created", "reason"], rows))


@app.command()
@one_line_errors
def show(
    version: Annotated[
        str | None, typer.Argument(help="Version number or 'current' (or give --at).")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="the version current at this ISO 8601 time (UTC if no zone)"),
    ] = None,
    store: StoreOption = DEFAULT_STORE,
    as_json: JsonOption = False,
) -> None:
    """Show one version (default: the current one): metadata, parameters and outcomes."""
    if version is not None and at is not None:
        raise UnknownVersion("give a VERSION or --at TIME, not both")
    if version is None and at is None:
        version = "current"
    s = _open(store)
    snap = s.load(parse_version(version) if at is None else version_at(s, parse_time(at)))
    # the table needs outcomes only; --json also lists each record's data variables
    experiments = {q: recs for q in snap.qubits if (recs := snap.experiments(q, raw=as_json))}
    if as_json:
        _print_json(
            {
                "version": snap.version,
                "parent": snap.parent,
                "created": snap.created,
                "reason": snap.reason,
                "provenance": snap.provenance,
                "fluxcal_version": snap.fluxcal_version,
                "code_version": snap.code_version,
                "checksum": snap.checksum,
                "current": snap.version == s.current_version(),
                "parameters": {
                    q: {n: dataclasses.asdict(p) for n, p in ps.items()}
                    for q, ps in snap.parameters.items()
                },
                "experiments": {
                    q: {
                        name: {
                            "outcome": r.outcome,
                            "reason": r.reason,
                            "report": r.report,
                            "updated": r.updated,
                            "device_seconds": r.device_seconds,
                            "fit": {k: list(v) for k, v in r.fit.items()},
                            "data_variables": [] if r.data is None else list(r.data.data_vars),
                        }
                        for name, r in recs.items()
                    }
                    for q, recs in experiments.items()
                },
                "station": snap.station,
                "settings": snap.settings,
            }
        )
        return
    mark = " (current)" if snap.version == s.current_version() else ""
    lines = [
        f"version {snap.version}{mark}  parent {snap.parent}  created {snap.created}"
        f"  fluxcal {snap.fluxcal_version}",
        f"reason: {snap.reason}",
        "provenance: " + (", ".join(f"{k}={v}" for k, v in sorted(snap.provenance.items())) or "-"),
        f"checksum: {snap.checksum}",
        f"code: {_code(snap.code_version)}",
        f"settings: {_settings(snap.settings)}",
        "",
        _table(
            ["qubit", "parameter", "value", "experiment", "updated"],
            [
                [q, n, _quantity(p), p.experiment, p.updated]
                for q, ps in sorted(snap.parameters.items())
                for n, p in sorted(ps.items())
            ],
        ),
    ]
    exp_rows = [
        [q, name, r.outcome, _device_time(r.device_seconds), r.reason]
        for q, recs in sorted(experiments.items())
        for name, r in sorted(recs.items())
    ]
    if exp_rows:
        lines += [
            "",
            _table(["qubit", "experiment", "outcome", "device time", "reason"], exp_rows),
        ]
        lines.append(f"device time in total: {_device_time(_total_device_time(experiments))}")
    typer.echo("\n".join(lines))


@app.command()
@one_line_errors
def diff(
    a: Annotated[str, typer.Argument(help="Old version or 'current'.")],
    b: Annotated[str, typer.Argument(help="New version or 'current'.")],
    store: StoreOption = DEFAULT_STORE,
    as_json: JsonOption = False,
) -> None:
    """Parameters that changed from A to B, with the change in combined standard errors."""
    s = _open(store)
    changes = s.diff(_resolve(s, a), _resolve(s, b))
    if as_json:
        _print_json([dataclasses.asdict(c) for c in changes])
        return
    rows = [
        [
            c.qubit,
            c.name,
            c.kind,
            _quantity(c.old) if c.old else "-",
            _quantity(c.new) if c.new else "-",
            _scaled(c.delta, c.unit, 3) if c.kind == "changed" else "",
            f"{c.delta_sigma:+.1f}" if math.isfinite(c.delta_sigma) else "",
        ]
        for c in changes
    ]
    headers = ["qubit", "parameter", "change", "old", "new", "delta", "delta/σ"]
    typer.echo(_table(headers, rows) if rows else "no parameter changes")


@app.command()
@one_line_errors
def history(
    qubit: str,
    param: str,
    store: StoreOption = DEFAULT_STORE,
    as_json: JsonOption = False,
) -> None:
    """Value of one parameter in every version that holds it, oldest first."""
    rows = _open(store).history(qubit, param)
    if not rows:
        raise StoreError(f"no version holds parameter {param!r} of qubit {qubit!r}")
    if as_json:
        _print_json([{"version": v, **dataclasses.asdict(p)} for v, p in rows])
        return
    table = [[v, _quantity(p), p.experiment, p.updated] for v, p in rows]
    typer.echo(_table(["version", "value", "experiment", "updated"], table))


@app.command()
@one_line_errors
def trend(
    param: Annotated[str, typer.Argument(help="Parameter name, e.g. T1.")],
    qubit: Annotated[
        list[str] | None, typer.Option("--qubit", help="qubit(s); default all")
    ] = None,
    last: Annotated[
        int | None, typer.Option("--last", min=1, help="only the N most recent measurements")
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="also write a PNG plot")] = None,
    store: StoreOption = DEFAULT_STORE,
    as_json: JsonOption = False,
) -> None:
    """Each measurement of a parameter once, oldest first (values carried forward skipped)."""
    from fluxcal.trend import trends, write_trend_png

    series = trends(_open(store), [param], qubit, last)
    if plot is not None:
        write_trend_png(series, plot)
    per_qubit = series[param]
    if as_json:
        _print_json(
            {
                q: [{"version": t.version, **dataclasses.asdict(t.parameter)} for t in points]
                for q, points in per_qubit.items()
            }
        )
        return
    rows = [
        [q, t.version, t.parameter.updated, _quantity(t.parameter), t.parameter.experiment]
        for q, points in per_qubit.items()
        for t in points
    ]
    typer.echo(_table(["qubit", "version", "measured", "value", "experiment"], rows))


@app.command()
@one_line_errors
def current(store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """The current version, its checksum and age: what a job should record it ran with."""
    s = _open(store)
    snap = s.load()  # checks the checksum, so what is printed is what the file holds
    now = datetime.now(UTC)
    updated = [p.updated for ps in snap.parameters.values() for p in ps.values()]
    oldest = min(updated, key=parse_time) if updated else None
    record = {
        "version": snap.version,
        "checksum": snap.checksum,
        "created": snap.created,
        "age_seconds": (now - parse_time(snap.created)).total_seconds(),
        "oldest_parameter_updated": oldest,
        "oldest_parameter_age_seconds": (
            (now - parse_time(oldest)).total_seconds() if oldest else None
        ),
        "store": str(s.path.resolve()),
    }
    if as_json:
        _print_json(record)
        return
    typer.echo(
        f"v{snap.version}  {snap.checksum}  created {snap.created} "
        f"({_age(record['age_seconds'])} ago)"
    )


@app.command()
@one_line_errors
def rollback(
    version: Annotated[int, typer.Argument(help="Version whose content becomes current again.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the new version).")],
    store: StoreOption = DEFAULT_STORE,
    as_json: JsonOption = False,
) -> None:
    """Create a new current version with the content of VERSION (history is kept)."""
    new = _open(store).rollback(version, reason)
    if as_json:
        _print_json({"version": new, "rollback_of": version})
    else:
        typer.echo(f"created v{new} with the content of v{version}")


@app.command()
@one_line_errors
def verify(store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """Check every version file, the CURRENT pointer and the index; exit 1 on any problem."""
    s = _open(store)
    problems = s.verify()
    if as_json:
        _print_json([dataclasses.asdict(p) for p in problems])
    elif problems:
        rows = [[p.kind, "" if p.version is None else p.version, p.message] for p in problems]
        typer.echo(_table(["problem", "version", "message"], rows))
    else:
        typer.echo(f"ok: {len(s.versions())} versions, pointer and index verified")
    if problems:
        raise typer.Exit(1)


def _open(path: Path) -> SnapshotStore:
    return SnapshotStore(path, create=False)


def parse_version(text: str) -> int | None:
    """'current' -> None; '12', 'v12' or 'v000012' -> 12."""
    if text == "current":
        return None
    match = re.fullmatch(r"v?(\d+)", text)
    if match is None:
        raise UnknownVersion(f"not a version: {text!r} (use a number or 'current')")
    return int(match.group(1))


def _resolve(store: SnapshotStore, text: str) -> int:
    version = parse_version(text)
    if version is None:
        version = store.current_version()
        if version is None:
            raise UnknownVersion(f"store {store.path} has no current version")
    return version


def parse_time(text: str) -> datetime:
    """ISO 8601 (a trailing Z allowed); a time without a zone is UTC, as the store writes."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UnknownVersion(f"not an ISO 8601 time: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def version_at(store: SnapshotStore, when: datetime) -> int:
    """The version that was current at `when`: the newest created at or before it (every
    save makes its version current, and a rollback is a new version, so none is skipped)."""
    made = [v.version for v in store.versions() if parse_time(v.created) <= when]
    if not made:
        raise UnknownVersion(f"no version of {store.path} existed at {when.isoformat()}")
    return max(made)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _code(version: dict[str, Any]) -> str:
    if not version:
        return "not recorded"
    text = f"fluxcal {version.get('fluxcal', '?')}"
    if "git_commit" in version:
        text += f", git {version['git_commit'][:12]}"
        text += " with uncommitted changes" if version.get("git_dirty") else ""
    return text


def _settings(settings: dict[str, Any]) -> str:
    """Which qubits the recorded settings cover; the values themselves are in --json."""
    if not settings:
        return "not recorded"
    nodes = max(len(nodes) for nodes in settings.values())
    return f"{', '.join(sorted(settings))} ({nodes} nodes each; values in --json)"


def _scaled(x: float, unit: str, digits: int = 10) -> str:
    """SI-prefixed value (Hz, s, V); enough digits that a kHz shift of a GHz value shows."""
    if unit in ("", "rad") or not math.isfinite(x) or x == 0:
        return f"{x:.{digits}g} {unit}".rstrip()
    scale, prefix = next(((s, p) for s, p in _PREFIXES if abs(x) >= s), _PREFIXES[-1])
    return f"{x / scale:.{digits}g} {prefix}{unit}"


def _quantity(p: CalibratedParameter) -> str:
    text = _scaled(p.value, p.unit)
    return text + (f" ± {_scaled(p.stderr, p.unit, 2)}" if math.isfinite(p.stderr) else "")


def _device_time(seconds: float) -> str:
    """Device time as a lab reads it: seconds, minutes or hours; '-' when not recorded."""
    if not math.isfinite(seconds):
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def _total_device_time(experiments: Mapping[str, Mapping[str, ExperimentRecord]]) -> float:
    """Sum over the recorded experiments (NaN when none recorded its device time)."""
    times = [r.device_seconds for recs in experiments.values() for r in recs.values()]
    recorded = [t for t in times if math.isfinite(t)]
    return float(sum(recorded)) if recorded else math.nan


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(_json_safe(obj), indent=2))


def _json_safe(obj: Any) -> Any:
    """Strict JSON: nan/inf (unknown stderr, undefined significance) become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj
