"""Which qubits may be measured at the same time: groups of qubits that share hardware lines.

Two qubits conflict when they share a readout feedline or a flux or drive channel
(`Lines` in the device file); conflicts chain (q0–q1 on one feedline, q1–q2 on one flux
channel put all three in one group). Qubits of different groups share nothing and may run
concurrently; the qubits of one group run one after another. A station without a simulated
device behind it declares no wiring, so all its qubits form one group: running real
hardware concurrently needs the lab to say it is safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from qcodes import Station

from fluxcal.instruments.device_config import Lines


def line_groups(lines: Mapping[str, Lines], qubits: Iterable[str]) -> list[list[str]]:
    """`qubits` partitioned into groups that share no line, each in the given qubit order,
    groups ordered by their first qubit."""
    qubits = list(qubits)
    owner: dict[tuple[str, str], str] = {}
    parent = {q: q for q in qubits}

    def root(qubit: str) -> str:
        while parent[qubit] != qubit:
            parent[qubit] = parent[parent[qubit]]
            qubit = parent[qubit]
        return qubit

    for qubit in qubits:
        for line in lines[qubit].named():
            if line in owner:
                parent[root(qubit)] = root(owner[line])
            else:
                owner[line] = qubit
    groups: dict[str, list[str]] = {}
    for qubit in qubits:
        groups.setdefault(root(qubit), []).append(qubit)
    return list(groups.values())


def station_groups(station: Station, qubits: Iterable[str]) -> list[list[str]]:
    """The concurrency groups of `qubits` on `station`: from the device file's wiring when the
    station is the simulated lab, else one group (nothing declared, nothing in parallel)."""
    qubits = list(qubits)
    lab = getattr(station.components.get("readout"), "lab", None)
    device = getattr(lab, "device", None)
    if device is None:
        return [qubits] if qubits else []
    return line_groups({q: device.config.qubits[q].lines for q in qubits}, qubits)
