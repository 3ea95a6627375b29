"""Print a simulated device's truth at given times as JSON, for the two-process drift test.

Usage: python tests/drift_probe.py DEVICE_YAML TIME [TIME ...]
A fresh interpreter shares no state with the test, so identical output from two of them shows
that drift is a function of (device file, time) only, as DESIGN.md promises.
"""

from __future__ import annotations

import json
import sys

from fluxcal.instruments.device import SimulatedDevice


def main(argv: list[str]) -> None:
    device = SimulatedDevice.from_yaml(argv[0])
    truths = {time: device.truth(float(time)) for time in argv[1:]}
    print(json.dumps(truths, sort_keys=True))  # json writes floats with repr: exact round trip


if __name__ == "__main__":
    main(sys.argv[1:])
