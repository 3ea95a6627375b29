"""Calibration settings: the node dataclasses' fields, set per node and per qubit from a file.

A node's fields (sweep windows, shot counts, gate limits) are its settings. A lab whose
readout resonator sits at 5 GHz must change `resonator_search.band` without editing source,
possibly for one qubit only, and a snapshot must say what it was made with. The file::

    defaults:                  # per node, for every qubit
      resonator_search: {band: [4.0e9, 9.0e9]}
    qubits:                    # per qubit, merged over the defaults
      q1:
        resonator_search: {band: [5.0e9, 6.0e9]}

is validated against the node classes themselves (their dataclass fields and type
annotations), never against a copied list: a field added to a node is settable at once, and
an entry for a renamed or removed field is rejected with its path. Every problem is reported
in one `SettingsError` line naming the field, e.g.
`qubits.q1.resonator_search.band: expected 2 numbers, got 3`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

from fluxcal.calibrations.graph import DEFAULT_GRAPH, GraphEntry

#: Overrides of one dataclass: field -> validated value (a nested dataclass's are a dict).
Overrides = dict[str, Any]
#: Effective settings as plain JSON data: qubit -> node -> field -> value.
Resolved = dict[str, dict[str, dict[str, Any]]]

SECTIONS = ("defaults", "qubits")
# Strict: "5" is not a number and 1.5 is not a shot count; an int is still a fine float.
_STRICT = ConfigDict(strict=True, allow_inf_nan=False)


class SettingsError(ValueError):
    """A settings file that cannot configure the nodes; the message names each bad field."""


@dataclass(frozen=True)
class CalibrationSettings:
    """Validated per-node overrides, for every qubit (`defaults`) and per qubit (`qubits`).

    Only what the file sets is kept; everything else is the node class's own default, so
    `resolved` always shows the complete settings of the code that runs.
    """

    defaults: Mapping[str, Overrides] = field(default_factory=dict)
    qubits: Mapping[str, Mapping[str, Overrides]] = field(default_factory=dict)
    graph: Mapping[str, GraphEntry] = field(
        default_factory=lambda: DEFAULT_GRAPH, repr=False, compare=False
    )

    @classmethod
    def from_dict(
        cls,
        data: object,
        graph: Mapping[str, GraphEntry] | None = None,
        source: str = "",
    ) -> CalibrationSettings:
        """Validate a parsed settings document against `graph`'s nodes (default: the graph)."""
        graph = DEFAULT_GRAPH if graph is None else graph
        problems: list[str] = []
        document = _mapping(data, "<top level>", "a mapping with defaults and qubits", problems)
        for key in document:
            if key not in SECTIONS:
                problems.append(f"{key}: unknown section" + _suggest(key, SECTIONS))
        defaults = _nodes(graph, document.get("defaults"), "defaults", problems)
        qubits = {}
        for qubit, nodes in _mapping(
            document.get("qubits"), "qubits", "a mapping of qubit names", problems
        ).items():
            if not isinstance(qubit, str):
                problems.append(f"qubits.{qubit}: a qubit name must be text")
                continue
            qubits[qubit] = _nodes(graph, nodes, f"qubits.{qubit}", problems)
        if problems:
            prefix = f"{source}: " if source else ""
            raise SettingsError(prefix + "; ".join(problems))
        return cls(defaults, qubits, graph)

    @classmethod
    def load(
        cls, path: str | Path, graph: Mapping[str, GraphEntry] | None = None
    ) -> CalibrationSettings:
        """Read and validate a settings YAML file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"settings file not found: {path}")
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=SettingsLoader)
        except yaml.YAMLError as error:
            raise SettingsError(f"{path}: not valid YAML ({_one_line(error)})") from None
        except (OSError, UnicodeDecodeError) as error:
            raise SettingsError(f"{path}: cannot read settings file ({error})") from None
        return cls.from_dict(data, graph, source=str(path))

    def for_node(self, qubit: str, node: str) -> dict[str, Any]:
        """Constructor keyword arguments of `node` on `qubit`: only what the file sets,
        defaults merged under the qubit's own entries, nested dataclasses built."""
        overrides = _merge(self.defaults.get(node, {}), self.qubits.get(qubit, {}).get(node, {}))
        return _build(self.graph[node].node, overrides) if overrides else {}

    def resolved(self, qubits: Iterable[str]) -> Resolved:
        """Every field of every node on each qubit, as the nodes would run: plain JSON data."""
        return {
            qubit: {
                name: _plain_fields(entry.node(**self.for_node(qubit, name)))
                for name, entry in self.graph.items()
            }
            for qubit in qubits
        }

    def as_dict(self) -> dict[str, Any]:
        """The file's content (what it sets, nothing more) as plain JSON data."""
        return {"defaults": _plain(dict(self.defaults)), "qubits": _plain(dict(self.qubits))}

    def check_qubits(self, available: Iterable[str]) -> None:
        """Fail when the file configures a qubit the station does not have (a typo there
        would otherwise silently calibrate that qubit with defaults)."""
        present = list(available)
        unknown = [q for q in self.qubits if q not in present]
        if unknown:
            raise SettingsError(
                "; ".join(
                    f"qubits.{q}: no such qubit on the station (it has {', '.join(present)})"
                    + _suggest(q, present)
                    for q in unknown
                )
            )


def settings_from(
    source: CalibrationSettings | str | Path | Mapping[str, Any] | None,
    graph: Mapping[str, GraphEntry] | None = None,
) -> CalibrationSettings:
    """Settings from what a flow or command was given: a file path, a parsed document (as
    Prefect stores flow parameters), ready settings, or nothing (every field at its default)."""
    if isinstance(source, CalibrationSettings):
        return source
    if source is None:
        return CalibrationSettings(graph=DEFAULT_GRAPH if graph is None else graph)
    if isinstance(source, str | Path):
        return CalibrationSettings.load(source, graph)
    return CalibrationSettings.from_dict(source, graph, source="settings")


def node_fields(cls: type) -> dict[str, Any]:
    """The settable fields of a dataclass and their resolved type annotations (none for a
    node that is not a dataclass: it has no settings)."""
    if not dataclasses.is_dataclass(cls):
        return {}
    hints = _type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


class SettingsLoader(yaml.SafeLoader):
    """YAML with 1.2 floats: PyYAML (YAML 1.1) reads `4.0e9` and `5e9` as text, which in a
    file full of frequencies would be a trap rather than a type error."""


SettingsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


# ----------------------------------------------------------------------------- validation
def _nodes(
    graph: Mapping[str, GraphEntry], data: object, path: str, problems: list[str]
) -> dict[str, Overrides]:
    out = {}
    for name, values in _mapping(data, path, "a mapping of node names", problems).items():
        if name not in graph:
            message = f"{path}.{name}: unknown calibration node" + _suggest(name, graph)
            problems.append(message)
            continue
        out[name] = _dataclass(graph[name].node, values, f"{path}.{name}", problems)
    return out


def _dataclass(cls: type, data: object, path: str, problems: list[str]) -> Overrides:
    fields = node_fields(cls)
    kind = cls.__name__
    out = {}
    for key, value in _mapping(data, path, f"a mapping of {kind} fields", problems).items():
        if key not in fields:
            problems.append(f"{path}.{key}: unknown field of {kind}" + _suggest(key, fields))
            continue
        out[key] = _value(fields[key], value, f"{path}.{key}", problems)
    return out


def _value(annotation: Any, value: object, path: str, problems: list[str]) -> Any:
    if dataclasses.is_dataclass(annotation):
        return _dataclass(annotation, value, path, problems)  # type: ignore[arg-type]
    if typing.get_origin(annotation) is tuple:
        return _tuple(annotation, value, path, problems)
    try:
        return _adapter(annotation).validate_python(value)
    except ValidationError as error:
        item = error.errors()[0]
        where = path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"])
        message = item["msg"].replace("Input should be", "expected", 1)
        problems.append(f"{where}: {message}, got {_show(item['input'])}")
        return None


def _tuple(annotation: Any, value: object, path: str, problems: list[str]) -> tuple | None:
    """Fixed-length tuples arrive as YAML lists; their length is part of the type."""
    items = typing.get_args(annotation)
    variadic = len(items) == 2 and items[1] is Ellipsis
    numbers = all(item in (int, float) for item in items if item is not Ellipsis)
    what = "numbers" if numbers else "items"
    if not isinstance(value, list | tuple):
        size = "a list of " + ("" if variadic else f"{len(items)} ") + what
        problems.append(f"{path}: expected {size}, got {_show(value)}")
        return None
    if variadic:
        items = (items[0],) * len(value)
    elif len(value) != len(items):
        problems.append(f"{path}: expected {len(items)} {what}, got {len(value)}")
        return None
    return tuple(
        _value(item, v, f"{path}[{i}]", problems)
        for i, (item, v) in enumerate(zip(items, value, strict=True))
    )


def _mapping(data: object, path: str, what: str, problems: list[str]) -> Mapping[Any, Any]:
    """A mapping, with an empty YAML entry (`rabi:` with nothing under it) as an empty one."""
    if data is None:
        return {}
    if isinstance(data, Mapping):
        return data
    problems.append(f"{path}: expected {what}, got {_show(data)}")
    return {}


@functools.cache
def _adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation, config=_STRICT)


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _suggest(name: object, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


# ------------------------------------------------------------------------- building, output
def _merge(base: Overrides, over: Overrides) -> Overrides:
    """Per-qubit entries over the defaults; a nested dataclass merges field by field."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _build(cls: type, overrides: Overrides) -> dict[str, Any]:
    """Keyword arguments for `cls`: nested overrides replace fields of the field's default."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in overrides.items():
        annotation = node_fields(cls)[name]
        if dataclasses.is_dataclass(annotation):
            nested = _build(annotation, value)  # type: ignore[arg-type]
            default = _default(fields[name])
            value = (
                dataclasses.replace(default, **nested)
                if dataclasses.is_dataclass(default)
                else annotation(**nested)  # type: ignore[operator]
            )
        kwargs[name] = value
    return kwargs


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _plain_fields(instance: Any) -> dict[str, Any]:
    return {name: _plain(getattr(instance, name)) for name in node_fields(type(instance))}


def _plain(value: Any) -> Any:
    """JSON data: dataclasses as mappings of their settable fields, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain_fields(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
