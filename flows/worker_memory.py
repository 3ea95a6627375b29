"""Keep a fit worker's freed memory for reuse instead of handing it back after every fit step.

Dask's nanny starts each worker with `MALLOC_TRIM_THRESHOLD_=65536` (so that idle workers
return memory to the system). Setting that variable also freezes glibc's mmap threshold at
128 kB, so every temporary array above it is mapped fresh and unmapped when freed, and the
heap is trimmed after each free. The spectrum and flux-map fits allocate MB-sized
temporaries per cost evaluation: on a Dask worker one resonator_flux fit took 2.7 million
page faults and 2.5× its wall time in the flow's own process. `keep_freed_memory` lets the
worker's allocator keep up to `TRIM_THRESHOLD` of freed heap and serve blocks below
`MMAP_THRESHOLD` from it, as a process that never had the variable does.
"""

from __future__ import annotations

import ctypes
import functools

#: glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD = 256 * 2**20  # bytes of freed heap kept before trimming
MMAP_THRESHOLD = 32 * 2**20  # blocks from this size up are mapped on their own (glibc's max)


@functools.cache
def keep_freed_memory() -> bool:
    """Tune this process's allocator once; False where libc has no `mallopt` (not glibc)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    )
