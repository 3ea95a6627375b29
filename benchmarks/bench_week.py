"""A simulated week of operation: is the on-call quiet until a flux jump, and told about it?

One qubit of the built-in device file (default q1, the heavy fluxonium, with the file's drift:
flux random walk, resonator creep, T1 fluctuation) gets the file's flux jump (its thermal
event, 0.004 Φ0, one day in on q0) late in the week instead. On a
simulated clock (`tests/operations_week.py`) it is brought up at hour 0, then maintained: the
daily run every 24 h (what `daily-calibration` does in mode auto on a calibrated chip, its
maintenance walk, through the plain runner) and the full drift check (every node's check,
the default graph with its real timeouts) every `--drift-every` hours; the exporter is scraped
after every hour. `promtool test rules` then evaluates fluxcal's alert rules
(`fluxcal/monitoring/alerts.yml`) over the whole week.

It prints each alert with the hour it fired and resolved, the event's hour, every drift-check
or daily-run verdict that was not in spec, device and CPU time, and the three answers: no
alert before the event, an alert at the event, the hour the chip was back in spec.

Run: .venv/bin/python benchmarks/bench_week.py [--hours 168] [--jump-hour 147.5]
     [--jump-size PHI0] [--qubit q1] [--drift-every 1] [--no-drift] [--verbose]
     [--save FILE] [--replay FILE]
`--save` writes every hour's scrape and record as JSON, `--replay` evaluates the alert rules
over a saved week without simulating it again (the rules change, the chip's week does not).
Needs promtool (Debian: apt-get install prometheus) for the alerts; without it, the rest.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from operations_week import (
    PROMTOOL,
    Hour,
    Operation,
    Scrape,
    as_series,
    file_flux_jump,
    firing,
    operate,
)

from fluxcal.instruments.device import SimulatedDevice, default_device_path
from fluxcal.instruments.device_config import parse_device_config


def week_device(qubit: str, jump_hour: float, jump_size: float, drift: bool) -> SimulatedDevice:
    """The device file's `qubit` alone, its events replaced by one flux jump."""
    config = yaml.safe_load(default_device_path().read_text())
    spec = copy.deepcopy(config["qubits"][qubit])
    spec["events"] = [{"time": jump_hour * 3600.0, "kind": "flux_jump", "size": jump_size}]
    if not drift:
        spec.pop("drift", None)
    config["qubits"] = {qubit: spec}
    return SimulatedDevice(parse_device_config(config), time=0.0)


#: Minutes between promtool samples: a week of 1-minute samples exceeds promtool's limit.
STEP = 5


def saver(path: Path, args: argparse.Namespace) -> Callable[[Hour, Scrape], None]:
    """Append each hour (its record and scrape) to `path` as one JSON line as it ends, after a
    first line with the week's arguments: a week cut short can still be replayed."""
    settings = {k: v for k, v in vars(args).items() if k not in ("save", "replay")}
    path.write_text(json.dumps(settings) + "\n")

    def one(hour: Hour, scrape: Scrape) -> None:
        samples = [[name, [list(kv) for kv in labels], v] for (name, labels), v in scrape.items()]
        with path.open("a") as f:
            f.write(json.dumps({"hour": dataclasses.asdict(hour), "scrape": samples}) + "\n")

    return one


def load(path: Path) -> tuple[Operation, dict]:
    """A saved week (`saver`): its operation so far and its arguments."""
    lines = path.read_text().splitlines()
    settings, scrapes, hours = json.loads(lines[0]), [], []
    for line in lines[1:]:
        data = json.loads(line)
        scrapes.append(
            {(n, tuple(tuple(kv) for kv in labels)): v for n, labels, v in data["scrape"]}
        )
        hours.append(Hour(**data["hour"]))
    settings["hours"] = len(hours) - 1
    return Operation(scrapes, hours), settings


def alert_spans(fired: dict[int, list[dict]]) -> list[tuple[str, str, int, int | None]]:
    """(alert, labels, hour fired, hour resolved or None) from {minute: firing alerts}."""
    spans, open_ = [], {}
    for minute in sorted(fired):
        now = {}
        for labels in fired[minute]:
            rest = {k: v for k, v in labels.items() if k not in ("alertname", "severity")}
            key = (labels["alertname"], ",".join(f"{k}={v}" for k, v in sorted(rest.items())))
            now[key] = minute // 60
        for key, hour in now.items():
            open_.setdefault(key, hour)
        for key in [k for k in open_ if k not in now]:
            spans.append((*key, open_.pop(key), minute // 60))
    spans.extend((*key, hour, None) for key, hour in open_.items())
    return sorted(spans, key=lambda s: (s[2], s[0], s[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=int, default=168)
    parser.add_argument("--jump-hour", type=float, default=6 * 24 + 3.5)
    parser.add_argument(
        "--jump-size", type=float, default=None, help="flux jump (Φ0; default the device file's)"
    )
    parser.add_argument("--qubit", default="q1")
    parser.add_argument("--drift-every", type=int, default=1)
    parser.add_argument("--no-drift", action="store_true", help="drop the file's drift block")
    parser.add_argument("--verbose", action="store_true", help="print every hour as it ends")
    parser.add_argument("--save", type=Path, help="write the week's scrapes and hours (JSON)")
    parser.add_argument("--replay", type=Path, help="evaluate the alerts over a saved week")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    if args.jump_size is None:
        args.jump_size = file_flux_jump()
    if args.replay is not None:
        operation, saved = load(args.replay)
        for name in ("hours", "jump_hour", "jump_size", "qubit", "drift_every", "no_drift"):
            setattr(args, name, saved[name])
        print(f"replaying {args.replay}")
    print(
        f"{args.hours} h on {args.qubit} of the device file "
        f"({'its drift' if not args.no_drift else 'no drift'}), flux jump of "
        f"{args.jump_size:g} Φ0 at hour {args.jump_hour:g}; daily run every 24 h, drift check "
        f"every {args.drift_every} h"
    )

    def show(h: Hour) -> None:
        if args.verbose:
            print(
                f"  h{h.hour:3d} {h.flow:<17} {h.device_s:7.1f} device-s {h.cpu_s:5.1f} CPU-s "
                f"f01 err {h.frequency_error_hz / 1e3:+7.1f} kHz {h.not_in_spec or ''} "
                f"{ {n: a for n, a in h.actions.items() if h.hour} or '' }",
                flush=True,
            )

    wall = time.perf_counter()
    if args.replay is None:
        device = week_device(args.qubit, args.jump_hour, args.jump_size, not args.no_drift)
        with tempfile.TemporaryDirectory(prefix="fluxcal-week-") as tmp:
            operation = operate(
                device,
                Path(tmp) / "store",
                args.hours,
                drift_every=args.drift_every,
                progress=show,
                each_hour=None if args.save is None else saver(args.save, args),
            )
    simulated_s = time.perf_counter() - wall

    event_hour = int(args.jump_hour) + 1  # the first scheduled run after the jump
    print(f"\nevent: flux jump at hour {args.jump_hour:g}; first run after it: hour {event_hour}")
    print("verdicts not in spec (hour: node verdict → action):")
    for h in operation.hours:
        if h.not_in_spec:
            items = ", ".join(
                f"{n} {v} → {h.actions.get(n, 'kept')}" for n, v in h.not_in_spec.items()
            )
            other = {n: a for n, a in h.actions.items() if n not in h.not_in_spec}
            items += f"; also {other}" if other else ""
            print(f"  h{h.hour:3d} {h.flow:<17} {items}")
    back = next(
        (h.hour for h in operation.hours if h.hour > event_hour and h.flow and not h.not_in_spec),
        None,
    )
    runs = [h for h in operation.hours if h.flow]
    print(
        f"device time {operation.device_s / 3600:.2f} h over {len(runs)} runs "
        f"({sum(h.device_s for h in runs if h.hour > 0) / 3600:.2f} h after the bring-up); "
        f"CPU {operation.cpu_s:.0f} s; wall {simulated_s:.0f} s to simulate"
    )

    if PROMTOOL is None:
        print("promtool not installed: alerts not evaluated (Debian: apt-get install prometheus)")
        return 0
    wall = time.perf_counter()
    minutes = [60 * h + 30 for h in range(1, args.hours + 1)]
    spans = alert_spans(firing(as_series(operation.scrapes, STEP), minutes, STEP))
    took = time.perf_counter() - wall
    print(f"alerts (promtool, evaluated at every hour + 30 min; {took:.0f} s):")
    for alert, labels, fired, resolved in spans:
        end = f"resolved hour {resolved}" if resolved is not None else "still firing"
        print(f"  {alert:<26} {labels:<48} fired hour {fired:3d}, {end}")
    if not spans:
        print("  none")
    before = [s for s in spans if s[2] < event_hour]
    at = [s for s in spans if s[2] == event_hour]
    print(f"no alert before the event: {'yes' if not before else 'no'} ({len(before)} before)")
    print(f"alert at the event: {'yes' if at else 'no'}")
    print(
        "back in spec after the event: "
        + (f"hour {back} ({back - event_hour} h after it)" if back is not None else "no")
    )
    return 0 if not before and at else 1


if __name__ == "__main__":
    sys.exit(main())
