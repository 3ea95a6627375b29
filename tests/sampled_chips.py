"""The design-space chips of the tests, each calibrated once per test session by whichever
process asks for it first.

Why: the ten chips take ~4 min of processor time, and one test file is one xdist worker's
serial job. The chips are split over two files the two workers run at the same time
(tests/test_design_space_chips_*.py), and the checks over all ten
(tests/test_design_space.py) read what both calibrated. The first process to ask for a
chip calibrates it under a file lock and leaves the verdict, pickled, in a folder the
session's workers share; any other waits for the lock and loads it. Run alone, a file
calibrates the chips it needs itself.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from filelock import FileLock
from robustness import ChainVerdict, calibrate_device

from fluxcal.instruments.design_space import sample_device

#: Chips drawn from the design space (instruments/design_space.py), one seed each.
SEEDS = tuple(range(3000, 3010))
#: The two halves the two chip files calibrate.
HALVES = (SEEDS[:5], SEEDS[5:])


def shared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder all processes of this test session see: the parent of the workers' own
    temporary folders under xdist, the session's temporary folder without it."""
    base = tmp_path_factory.getbasetemp()
    under_xdist = "PYTEST_XDIST_WORKER" in os.environ
    folder = (base.parent if under_xdist else base) / "sampled-chips"
    folder.mkdir(exist_ok=True)
    return folder


def verdict(seed: int, folder: Path) -> tuple[ChainVerdict, dict]:
    """Verdict and truth of sampled chip `seed` calibrated from scratch (once per session)."""
    result = folder / f"chip{seed}.pickle"
    with FileLock(folder / f"chip{seed}.lock"):
        if not result.exists():
            written = result.with_suffix(f".{os.getpid()}")
            written.write_bytes(pickle.dumps(calibrate_device(sample_device(seed))))
            os.replace(written, result)
        return pickle.loads(result.read_bytes())


def assert_no_wrong_value(verdict: ChainVerdict) -> None:
    """What must never happen: an accepted value outside its tolerance."""
    assert not verdict.wrong, verdict.wrong


def assert_rejection_named(verdict: ChainVerdict) -> None:
    """A chip may be rejected, but only with a named node and criterion."""
    if not verdict.fully_calibrated:
        node, reason = verdict.first_failure
        assert verdict.outcomes[node] in ("rejected", "failed")
        assert reason and ("needs" in reason or "error" in reason), reason
