"""Screenshot a page of the Prefect UI with headless Chromium (no browser driver needed).

Usage: python scripts/ui_screenshot.py URL OUT.png [--chromium /usr/bin/chromium]

Used to check that a flow run's artifacts (parameter table, fit reports with their embedded
PNG plots) render in the UI: e.g. URL = http://127.0.0.1:4200/runs/flow-run/<id>?tab=Artifacts
or an artifact page http://127.0.0.1:4200/artifacts/artifact/<artifact id>. Chromium runs with
a fresh profile, no network services of its own, and a virtual-time budget so the single-page
app has rendered before the screenshot is taken.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def screenshot(
    url: str,
    out: Path,
    chromium: str = CHROMIUM,
    window: tuple[int, int] = (1400, 1000),
    budget_ms: int = 15000,
    timeout_s: float = 120.0,
) -> Path:
    """Load `url` and write a PNG of the window to `out`; raise if Chromium wrote nothing."""
    out = Path(out).resolve()
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="fluxcal-chromium-") as profile:
        command = [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={window[0]},{window[1]}",
            f"--virtual-time-budget={budget_ms}",
            url,
        ]
        completed = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)
    if not out.is_file() or out.stat().st_size == 0:
        error = completed.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"chromium wrote no screenshot (exit {completed.returncode}): {error}")
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args(argv)
    path = screenshot(args.url, args.out, args.chromium, (args.width, args.height))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
