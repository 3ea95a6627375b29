"""A node's analysis repeats the fits its acquisition made: within one node run, reuse them.

Nodes decide during acquisition from fits of the data taken so far (whether a resonator
trace needs re-centring, which readings of the plasmon lines the flux map supports, where
the mirror axis of a flux map lies), and their `analyse`, which must work from the recorded
data alone (offline, from a snapshot), fits the same data again. `run_node` holds a memory
for the node's run (`fits_reused`); inside it, a function marked `@reused` that is called
with inputs it has already been given returns its earlier result (or raises its earlier
error) instead of fitting again. Outside a node's run nothing is remembered, so offline
re-analysis, tests and tools always fit afresh, and one run never sees another's results.

Inputs count as the same when equal in content: numpy arrays (dtype, shape, bytes), numbers
(bit for bit), strings, None, tuples and lists, and frozen dataclasses of those; a call with
any other argument is not remembered. The functions marked are pure (their result depends
on their arguments only) and return frozen dataclasses, which the callers then share.

Why: the built-in chips' chains fitted the same resonator trace, flux map and f01 trace
twice, ~4.5 s of a 12–16 s chain's processor time; on sampled chips 3000 and 3008 the flux
map's analysis repeated 12 of its 32 spectrum fits, 17–20 s of 53–62 s.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

#: (function, arguments' key) -> (returned value, raised error)
_Memory = dict[tuple[str, tuple], tuple[Any, Exception | None]]
_MEMORY: ContextVar[_Memory | None] = ContextVar("fits_reused", default=None)


class _Unkeyable(Exception):
    """An argument that is neither plain data nor a frozen dataclass of plain data."""


@contextmanager
def fits_reused() -> Iterator[None]:
    """Remember the results of `@reused` functions until the block ends (one node run).

    A context variable, so each thread (the walker runs qubits on several) has its own.
    """
    token = _MEMORY.set({})
    try:
        yield
    finally:
        _MEMORY.reset(token)


def reused(function: F) -> F:
    """Mark a pure function whose repeated calls within `fits_reused` return the first
    call's result (see the module)."""
    signature = inspect.signature(function)
    name = f"{function.__module__}.{function.__qualname__}"

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        memory = _MEMORY.get()
        if memory is None:
            return function(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        try:
            key = (name, tuple((k, _key(v)) for k, v in bound.arguments.items()))
        except _Unkeyable:
            return function(*args, **kwargs)
        if key not in memory:
            try:
                memory[key] = (function(*args, **kwargs), None)
            except Exception as error:
                memory[key] = (None, error)
        value, error = memory[key]
        if error is not None:
            raise error
        return value

    return wrapper  # type: ignore[return-value]


def _key(value: Any) -> tuple:
    """Content key of an argument; raises _Unkeyable for anything but plain data."""
    if value is None or isinstance(value, bool | int | str):
        return (type(value).__name__, value)
    if isinstance(value, float):  # bit for bit: nan equals itself, -0.0 is not 0.0
        return ("float", struct.pack("<d", value))
    if isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise _Unkeyable
        digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).digest()
        return ("array", array.dtype.str, array.shape, digest)
    if isinstance(value, tuple | list):
        return (type(value).__name__, tuple(_key(v) for v in value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if not type(value).__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise _Unkeyable
        fields = dataclasses.fields(value)
        return (type(value).__qualname__, tuple(_key(getattr(value, f.name)) for f in fields))
    raise _Unkeyable
