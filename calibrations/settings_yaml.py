"""The default settings file, written out with each field's meaning as a YAML comment.

`fluxcal settings defaults` prints it: every node of the graph, every field at its default,
commented with the comment its dataclass field carries in the source (`band: ... # Hz, the
readout line's band`, or a `#:` line above the field). The comments are read from the source
rather than kept in a table so they can never drift from the code; a subclass field without a
comment of its own takes its base class's (the meaning is inherited with the field).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import json
import textwrap
import tokenize
from collections.abc import Mapping
from typing import Any

import numpy as np

from fluxcal.calibrations.graph import DEFAULT_GRAPH, GraphEntry
from fluxcal.calibrations.settings import node_fields

HEADER = """\
# fluxcal calibration settings: every node's fields at their defaults (SI units: Hz, s, V).
# Keep only what you change. Per-qubit values go under `qubits`, e.g.
#   qubits:
#     q1:
#       resonator_search: {band: [5.0e+9, 6.0e+9]}
# and are merged over `defaults`. Check a file with `fluxcal settings check FILE`.
"""


def defaults_yaml(graph: Mapping[str, GraphEntry] = DEFAULT_GRAPH) -> str:
    """The complete default settings file for `graph`, as YAML text with comments."""
    lines = [HEADER.rstrip("\n"), "defaults:"]
    for name, entry in graph.items():
        summary = _summary(entry.node)
        if summary:
            lines.append(f"  # {summary}")
        lines.append(f"  {name}:")
        lines += _fields(entry.node(), indent=4)
    lines.append("qubits: {}")
    return "\n".join(lines) + "\n"


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> its source comment, for a dataclass and its dataclass bases."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            comments.update(_class_comments(klass))
    return comments


def _fields(instance: Any, indent: int) -> list[str]:
    pad = " " * indent
    comments = field_comments(type(instance))
    lines = []
    for name in node_fields(type(instance)):
        value = getattr(instance, name)
        note = f"  # {comments[name]}" if name in comments else ""
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{name}:{note}")
            lines += _fields(value, indent + 2)
        else:
            lines.append(f"{pad}{name}: {_scalar(value)}{note}")
    return lines


def _scalar(value: Any) -> str:
    """A YAML flow value that any YAML reader (1.1 or 1.2) parses back to the same value."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return repr(value)
        # `6.0e+9`, not `6e+09` or `6000000000.0`: a dot and a signed exponent for YAML 1.1
        return np.format_float_scientific(value, unique=True, trim="0", exp_digits=1)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def _summary(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return doc.split("\n\n")[0].replace("\n", " ").strip()


@functools.cache
def _class_comments(cls: type) -> dict[str, str]:
    """Comments of the fields this class's own body declares (none if its source is not
    available, e.g. a class made at run time)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    trailing = {
        token.start[0]: token.string.lstrip("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    body = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)).body
    comments = {}
    for statement in body:
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        above = []
        row = statement.lineno - 2  # 0-based index of the line above the field
        while row >= 0 and lines[row].strip().startswith("#:"):
            above.insert(0, lines[row].strip()[2:].strip())
            row -= 1
        text = " ".join(above) or trailing.get(statement.end_lineno or statement.lineno, "")
        if text:
            comments[statement.target.id] = text
    return comments
