"""Keep stdout for a command's result: measurement chatter goes to stderr, or nowhere.

QCoDeS prints `Starting experimental run with id: N.` for every run it records (a full
calibration makes ~120 of them), with `print`, so no logging setting silences it. While a
command measures, its stdout is redirected here: those lines are dropped unless `--verbose`
asks for them, and anything else printed is passed on to stderr, so `--json` output on
stdout stays parseable.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator

#: The start of the line QCoDeS prints for each measurement run.
RUN_STARTED = "Starting experimental run with id"


class _Chatter(io.TextIOBase):
    """A line filter in front of stderr that drops QCoDeS run-start lines when quiet."""

    def __init__(self, verbose: bool):
        self._verbose = verbose
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            if self._verbose or not line.startswith(RUN_STARTED):
                sys.stderr.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def finish(self) -> None:
        """Pass on (or drop) a last line that was never ended."""
        if self._partial:
            self.write("\n")
        self.flush()


@contextlib.contextmanager
def measurement_output(verbose: bool = False) -> Iterator[None]:
    """Redirect stdout for the duration of a measurement (see the module docstring)."""
    chatter = _Chatter(verbose)
    try:
        with contextlib.redirect_stdout(chatter):
            yield
    finally:
        chatter.finish()
