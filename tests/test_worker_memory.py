"""A fit worker started as Dask starts it keeps its freed memory once tuned.

A subprocess with Dask's `MALLOC_TRIM_THRESHOLD_=65536` allocates and frees MB-sized
temporaries as a fit's cost evaluations do, and counts its minor page faults: untuned, every
temporary is faulted in afresh (thousands of faults); after `keep_freed_memory`, almost
none. Skips where libc has no `mallopt` (not glibc).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fluxcal.flows.worker_memory import keep_freed_memory

LOOP = """
import resource, sys
import numpy as np
from fluxcal.flows.worker_memory import keep_freed_memory
if sys.argv[1] == "tuned":
    keep_freed_memory()
a = np.ones((400, 1000), complex)  # 6.4 MB, like a flux map's pair residuals
np.sqrt(a * 2.0)  # the first round maps the pages either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    np.sqrt(a * 2.0 + 1.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}  # as Dask's nanny sets it
    result = subprocess.run(
        [sys.executable, "-c", LOOP, mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(not keep_freed_memory(), reason="libc has no mallopt (not glibc)")
def test_a_tuned_worker_reuses_freed_memory_instead_of_faulting_it_in_again() -> None:
    untuned, tuned = faults("untuned"), faults("tuned")
    # 50 rounds of 6.4 MB temporaries: ~1000 pages of 4 KB faulted in per round when each is
    # mapped afresh (54 000 measured); reused, a few dozen in all (23 measured)
    assert untuned > 10_000
    assert tuned < untuned / 50
