"""The store's edges (issue 15): lost updates, forged files, a lying index, stray entries,
failed writes. Each test reproduces one cause from the issue and checks the store now ends
in a one-line StoreError or a warning, never a traceback, a hang or a lost value."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import snapshot_samples as samples
from qcodes import Station

from fluxcal.calibrations.node import now_iso
from fluxcal.calibrations.persist import current_parameters, save_run
from fluxcal.calibrations.runner import GraphRun, NodeResult
from fluxcal.snapshots import (
    CalibratedParameter,
    DamagedSnapshot,
    SnapshotStore,
    StoreError,
    StoreWarning,
    merge_parameters,
)
from fluxcal.snapshots import index as idx
from fluxcal.snapshots.layout import content_checksum
from fluxcal.snapshots.merge import updated_time

T1_SEED = samples.BASE["T1"][0]


@pytest.fixture(scope="module")
def three_versions(tmp_path_factory) -> Path:
    """A store of three versions with raw data, saved once for the module."""
    path = tmp_path_factory.mktemp("saved") / "store"
    store = SnapshotStore(path)
    for shift in range(3):
        store.save(samples.parameters(shift=shift), samples.experiments(n=20, seed=shift))
    return path


@pytest.fixture
def store(three_versions, tmp_path):
    """A copy of the three saved versions for each test to damage: the same bytes as saving
    them again, without the ~1 s of processor and ~3 s of disk syncs it took per test."""
    shutil.copytree(three_versions, tmp_path / "store", symlinks=True)
    return SnapshotStore(tmp_path / "store")


def assert_same_parameters(got, expected) -> None:
    """Equality that counts an unknown stderr (nan) as equal to itself."""
    np.testing.assert_equal(_rows(got), _rows(expected))


def _rows(params) -> dict[str, dict[str, tuple]]:
    return {q: {n: astuple(p) for n, p in ps.items()} for q, ps in params.items()}


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text
    return text


# ------------------------------------------------------------------ forged version files
def forge(path: Path, edit: Callable[[h5py.File], None]) -> None:
    """Edit a version file with h5py and recompute its content checksum: valid HDF5 whose
    checksum matches, so only the content checks can refuse it."""
    with h5py.File(path, "r+") as f:
        edit(f)
        if "huge" not in f:  # nobody can checksum 1 TiB; the reader must refuse it unread
            f.attrs["checksum"] = content_checksum(f)


def _set(obj: str, key: str, value) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        f[obj].attrs[key] = value

    return edit


def _replace_with_dataset(obj: str) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f[obj]
        f[obj] = np.zeros(3)

    return edit


def _link(name: str, link) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        f[name] = link

    return edit


def _external_storage(f: h5py.File) -> None:
    f.create_dataset("borrowed", shape=(4,), dtype="f8", external=[("/etc/hostname", 0, 32)])


def _huge_dataset(f: h5py.File) -> None:
    f.create_dataset("huge", shape=(1 << 40,), dtype="u1", chunks=(1 << 16,))


T1 = "qubits/q0/parameters/T1"
#: name -> edit; every one is valid HDF5 with a matching checksum and must still be refused
FORGERIES: dict[str, Callable[[h5py.File], None]] = {
    "nan value": _set(T1, "value", math.nan),
    "inf value": _set(T1, "value", math.inf),
    "1e300 value": _set(T1, "value", 1e300),
    "negative stderr": _set(T1, "stderr", -1.0),
    "value as text": _set(T1, "value", "2.1e-4"),
    "value as array": _set(T1, "value", np.array([1.0, 2.0])),
    "unit as number": _set(T1, "unit", 3.0),
    "format_version 99": _set("/", "format_version", 99),
    "format_version as text": _set("/", "format_version", "1"),
    "version as float": _set("/", "version", 2.0),
    "parent after itself": _set("/", "parent", 7),
    "created not a time": _set("/", "created", "yesterday"),
    "provenance a list": _set("/", "provenance", "[1, 2]"),
    "provenance not json": _set("/", "provenance", "{"),
    "provenance nested deep": _set("/", "provenance", "[" * 100_000 + "]" * 100_000),
    "code_version a string": _set("/", "code_version", '"0.1"'),
    "parameter replaced by dataset": _replace_with_dataset(T1),
    "parameters replaced by dataset": _replace_with_dataset("qubits/q0/parameters"),
    "qubits replaced by dataset": _replace_with_dataset("qubits"),
    "station replaced by group": lambda f: (f.__delitem__("station"), f.create_group("station")),
    "station a JSON list": lambda f: (
        f.__delitem__("station"),
        f.create_dataset("station", data="[]"),
    ),
    "external link": _link("qubits/q0/parameters/evil", h5py.ExternalLink("/etc/x.h5", "/")),
    "soft link": _link("qubits/q0/parameters/T1_again", h5py.SoftLink("/" + T1)),
    "external raw storage": _external_storage,
    "huge dataset": _huge_dataset,
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_forged_but_valid_file_is_refused_as_damaged(store, forgery):
    forge(store.path / "v000002.h5", FORGERIES[forgery])
    os.remove(store.path / "index.json")  # no recorded file hash: the content checks alone
    with pytest.raises(DamagedSnapshot) as caught:
        store.load(2)
    assert one_line(caught.value).startswith("v000002.h5 ")
    assert store.load(3).version == 3  # the current version is untouched
    with pytest.warns(StoreWarning, match="v000002.h5 .*; left out of the index"):
        assert [i.version for i in store.versions()] == [1, 3]
    assert [(p.kind, p.version) for p in store.verify()] == [("damaged", 2)]
    with pytest.raises(DamagedSnapshot):
        store.rollback(2)
    assert [v for v, _ in store.history("q0", "T1")] == [1, 3]


def test_forged_experiment_record_is_refused_on_read_and_rollback(store):
    forge(store.path / "v000001.h5", _set("qubits/q0/experiments/t1", "outcome", "great"))
    os.remove(store.path / "index.json")
    snap = store.load(1)  # parameters are fine; the record is read on demand
    with pytest.raises(DamagedSnapshot, match="unknown experiment outcome 'great'"):
        snap.experiments("q0")
    with pytest.raises(DamagedSnapshot):
        store.rollback(1)
    assert store.current_version() == 3


def test_the_store_never_writes_what_it_would_refuse(store):
    bad = CalibratedParameter(math.nan, 0.0, "s", "t1", samples.UPDATED)
    with pytest.raises(ValueError, match="q0/T1 has value nan"):
        store.save({"q0": {"T1": bad}})
    assert [i.version for i in store.versions()] == [1, 2, 3]


# ------------------------------------------------------------------ lost updates
def _accepted(qubit: str, node: str, params: dict[str, CalibratedParameter]) -> NodeResult:
    return NodeResult(node, qubit, "accepted", "fit ok", params, finished=samples.UPDATED)


def _run(seed, results: list[NodeResult]) -> GraphRun:
    """A run as run_graph returns it: seeded parameters updated by its accepted results."""
    known = {q: dict(p) for q, p in seed.items()}
    for r in results:
        known[r.qubit].update(r.parameters)
    return GraphRun({"q0": {r.node: r for r in results}}, known)


@pytest.mark.timeout(120)
def test_two_overlapping_runs_never_lose_an_accepted_value(tmp_path):
    """Both runs read the same current version before either saves (the race of issue 15);
    whatever order their saves land in, each accepted value survives, and where both measured
    the same parameter the more recent measurement wins."""
    station = Station()
    old = CalibratedParameter(1.0e-4, 1e-6, "s", "t1", "2025-11-26T09:00:00+00:00")
    for trial in range(20):
        store = SnapshotStore(tmp_path / f"store{trial}")
        store.save(samples.parameters())
        t1 = CalibratedParameter(
            3.0e-4 + trial * 1e-6, 1e-6, "s", "t1", f"2025-11-26T10:{trial:02d}:00+00:00"
        )
        qf = CalibratedParameter(360.0e6 + trial, 1e3, "Hz", "ramsey", "2025-11-26T10:30:00+00:00")
        barrier = threading.Barrier(2, timeout=30)
        versions: dict[str, int] = {}

        def calibrate(name, results, path=store.path, barrier=barrier, versions=versions):
            own = SnapshotStore(path)  # one store object per run, as in separate processes
            seed = current_parameters(own)
            barrier.wait()  # both have read their seed; now both save, in either order
            versions[name] = save_run(own, _run(seed, results), station, name)

        # run A accepts T1; run B accepts the qubit frequency and an *older* T1 measurement
        threads = [
            threading.Thread(target=calibrate, args=("A", [_accepted("q0", "t1", {"T1": t1})])),
            threading.Thread(
                target=calibrate,
                args=("B", [_accepted("q0", "ramsey", {"qubit_frequency": qf, "T1": old})]),
            ),
        ]
        for t in threads[:: 1 if trial % 2 else -1]:
            t.start()
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive()
        assert sorted(versions.values()) == [2, 3]
        final = store.load().parameters["q0"]
        assert final["T1"] == t1  # never replaced by the older measurement
        assert final["qubit_frequency"] == qf  # never undone by the other run's seed
        assert final["EJ"] == samples.parameters()["q0"]["EJ"]
        assert store.load(3).parent == 2


def test_measurements_within_one_second_keep_their_order():
    """Eight concurrent full chains (benchmarks/bench_concurrent_runs.py) finish a node within
    the same second; with `updated` stamped to the second, the run that saved last won the
    tie even when it had measured first. The stamp now orders such measurements."""
    for _ in range(10):
        first = now_iso()
        time.sleep(0.002)
        later = now_iso()
        if first[:19] == later[:19]:  # the same second: the case that used to tie
            break
    assert updated_time(t1_at(first)) < updated_time(t1_at(later))
    base = {"q0": {"T1": t1_at(later, 2e-4)}}
    merged = merge_parameters(base, {"q0": {"T1": t1_at(first, 1e-4)}})  # saved last
    assert merged["q0"]["T1"].value == 2e-4


def test_a_result_the_merge_drops_is_named_in_a_warning(tmp_path):
    """An accepted recalibration that loses to a later stored stamp (a clock running ahead,
    an imported value) must not vanish silently: the save warns and names it."""
    store = SnapshotStore(tmp_path / "store")
    store.save({"q0": {"T1": t1_at("2999-01-01T00:00:00+00:00", 2e-4)}}, reason="imported")
    with pytest.warns(StoreWarning, match=r"q0\.T1 .* not saved: .* clock skew") as record:
        store.save_changes({"q0": {"T1": t1_at(now_iso(), 1e-4)}}, reason="daily")
    assert record[0].filename == __file__  # points at the caller's save, not store internals
    assert store.load().parameters["q0"]["T1"].value == 2e-4


def test_overlapping_runs_warn_only_about_what_they_lose(tmp_path):
    store = SnapshotStore(tmp_path / "store")
    earlier, later = now_iso(), now_iso()
    store.save({"q0": {"T1": t1_at(later, 2e-4)}}, reason="first run")
    with pytest.warns(StoreWarning, match="measured later by another run") as record:
        store.save_changes(
            {"q0": {"T1": t1_at(earlier, 1e-4), "T2_echo": t1_at(earlier, 5e-5)}},
            reason="second run",
        )
    assert len(record) == 1 and "T2_echo" not in str(record[0].message)
    assert store.load().parameters["q0"]["T2_echo"].value == 5e-5


def t1_at(updated: str, value: float = 1e-4) -> CalibratedParameter:
    return CalibratedParameter(value, 1e-6, "s", "t1", updated)


# ------------------------------------------------------------------ damaged current version
@pytest.mark.parametrize(
    "damage",
    ["truncated", "pointer to a missing version", "pointer not UTF-8", "pointer huge"],
)
def test_a_damaged_current_version_never_blocks_a_new_calibration(store, damage):
    if damage == "truncated":
        os.truncate(store.path / "v000003.h5", 1000)
    elif damage == "pointer to a missing version":
        (store.path / "CURRENT").write_text("v000007.h5\n")
    elif damage == "pointer not UTF-8":
        (store.path / "CURRENT").write_bytes(b"\xff\xfe v000003.h5")
    else:
        (store.path / "CURRENT").write_bytes(b"v000003.h5\n" * 200_000)
    healthy = 2 if damage == "truncated" else 3
    with pytest.warns(StoreWarning, match=f"starting from v{healthy}"):
        seed = current_parameters(store)
    assert_same_parameters(seed, samples.parameters(shift=healthy - 1))
    with pytest.warns(StoreWarning):
        notice = store.baseline().notice
    assert notice.endswith(f"starting from v{healthy}") and "\n" not in notice
    t1 = CalibratedParameter(4e-4, 1e-5, "s", "t1", "2025-11-26T10:00:00+00:00")
    with pytest.warns(StoreWarning):
        version = save_run(store, _run(seed, [_accepted("q0", "t1", {"T1": t1})]), Station(), "x")
    snap = store.load()
    assert (snap.version, snap.parent) == (version, healthy)
    expected = {"q0": {**samples.parameters(shift=healthy - 1)["q0"], "T1": t1}}
    assert_same_parameters(snap.parameters, expected)


def test_an_empty_store_starts_from_nothing_without_a_warning(tmp_path):
    store = SnapshotStore(tmp_path / "store")
    base = store.baseline()
    assert (base.version, base.parameters, base.notice) == (None, {}, "")


# ------------------------------------------------------------------ the index
def test_a_changed_digit_in_the_index_is_caught_and_never_shown(store):
    index = json.loads((store.path / "index.json").read_text())
    row = index["versions"]["2"]["parameters"]["q0"]["T1"]
    row[0] = row[0] * 10
    (store.path / "index.json").write_text(json.dumps(index))
    assert [(p.kind, p.version) for p in store.verify()] == [("index", 2)]
    with pytest.warns(StoreWarning, match="v2 does not match its digest"):
        history = store.history("q0", "T1")
    assert [p.value for _, p in history] == [T1_SEED + s * 1e-5 for s in range(3)]
    assert store.verify() == []  # re-derived from the file and written back


def test_an_index_entry_that_disagrees_with_its_file_is_reported(store):
    """Even with a consistent digest (say, an index written by another tool)."""
    index = json.loads((store.path / "index.json").read_text())
    fields = {k: v for k, v in index["versions"]["1"].items() if k not in ("digest", "parameters")}
    forged = {
        "q0": {**store.load(1).parameters["q0"], "T1": CalibratedParameter(1.0, 0, "s", "", "")}
    }
    index["versions"]["1"] = idx.make_entry(version=1, parameters=forged, **fields)
    (store.path / "index.json").write_text(json.dumps(index))
    assert [(p.kind, p.version) for p in store.verify()] == [("index", 1)]


@pytest.mark.parametrize(
    "content", [b"{", b"[]", b"\xff\xfe", b'{"format": "fluxcal-snapshot-index"}', b"[" * 50_000]
)
def test_a_malformed_index_is_rebuilt_from_the_files_with_a_warning(store, content):
    before = store.versions()
    (store.path / "index.json").write_bytes(content)
    assert [p.kind for p in store.verify()] == ["index"]
    fresh = SnapshotStore(store.path)
    with pytest.warns(StoreWarning, match="rebuilding it from the files"):
        assert fresh.versions() == before
    assert fresh.verify() == []


# ------------------------------------------------------------------ stray directory entries
@pytest.mark.timeout(30)
def test_fifos_links_and_directories_are_ignored_never_opened(store, tmp_path):
    outside = tmp_path / "outside.h5"
    outside.write_bytes((store.path / "v000001.h5").read_bytes())
    os.mkfifo(store.path / "v000004.h5")
    os.symlink(outside, store.path / "v000005.h5")
    os.mkdir(store.path / "v000006.h5")
    os.remove(store.path / "index.json")
    os.mkfifo(store.path / "index.json")
    with pytest.warns(StoreWarning) as record:
        assert [i.version for i in store.versions()] == [1, 2, 3]
    messages = " ".join(str(w.message) for w in record)
    for what in (
        "v000004.h5 ignored: a FIFO",
        "v000005.h5 ignored: a symbolic link",
        "v000006.h5 ignored: a directory",
        "index.json unusable",
    ):
        assert what in messages
    problems = {(p.kind, Path(p.path).name) for p in store.verify()}
    assert problems == {
        ("ignored", "v000004.h5"),
        ("ignored", "v000005.h5"),
        ("ignored", "v000006.h5"),
    }  # index.json was rebuilt by versions()
    with pytest.warns(StoreWarning):
        assert store.save(samples.parameters()) == 7  # numbers stay above the stray names
    os.remove(store.path / "CURRENT")
    os.mkfifo(store.path / "CURRENT")
    with pytest.raises(StoreError, match=r"CURRENT is unusable: .*FIFO") as caught:
        store.load()
    one_line(caught.value)


def test_out_of_range_and_non_canonical_version_names_do_not_block_saves(store):
    (store.path / "v99999999999999999999.h5").write_bytes(b"")
    (store.path / "v0000001.h5").write_bytes((store.path / "v000001.h5").read_bytes())
    with pytest.warns(StoreWarning, match="not a version file name"):
        assert store.save(samples.parameters()) == 4
        assert [i.version for i in store.versions()] == [1, 2, 3, 4]


# ------------------------------------------------------------------ failed writes
STEPS = {
    "hdf5 write": "fluxcal.snapshots.store.write_version",
    "fsync": "fluxcal.snapshots.store.fsync_file",
    "rename": "fluxcal.snapshots.store.os.rename",
    "directory fsync": "fluxcal.snapshots.store.fsync_dir",
    "index write": "fluxcal.snapshots.index.atomic_write_text",
    "pointer write": "fluxcal.snapshots.pointer.atomic_write_text",
}


@pytest.mark.parametrize("step", sorted(STEPS))
def test_enospc_at_any_step_leaves_nothing_half_visible(store, monkeypatch, step):
    before = {p.name: p.read_bytes() for p in store.path.iterdir() if p.is_file()}

    def full_disk(*args, **kwargs):
        if step == "hdf5 write":  # libhdf5 has written part of the file when the disk fills
            Path(args[0]).write_bytes(b"\x89HDF partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(STEPS[step], full_disk)
    with pytest.raises(StoreError, match=r"cannot save v4 .*No space left on device") as caught:
        store.save(samples.parameters(shift=5), samples.experiments(n=20))
    one_line(caught.value)
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in store.path.iterdir() if p.is_file()}
    assert after == before  # no temp file, no v000004.h5; index and pointer as they were
    assert store.verify() == []
    assert store.save(samples.parameters()) == 4


def test_a_save_that_cannot_fit_is_refused_before_writing(store, monkeypatch):
    monkeypatch.setattr(
        "fluxcal.snapshots.store.shutil.disk_usage", lambda path: SimpleNamespace(free=0)
    )
    with pytest.raises(StoreError, match="not enough space"):
        store.save(samples.parameters(), samples.experiments(n=20))
    assert [i.version for i in store.versions()] == [1, 2, 3]


# ------------------------------------------------------------------ size
def test_raw_data_is_compressed_at_complex64_precision(store):
    with h5py.File(store.path / "v000001.h5") as f:
        iq = f["qubits/q0/experiments/qubit_flux_spectroscopy/data/iq"]
        assert (iq.compression, iq.shuffle, iq.chunks) == ("gzip", True, (41, 201))
        original = samples.experiments(n=20, seed=0)["q0"]["qubit_flux_spectroscopy"].data
        np.testing.assert_array_equal(iq[()], original["iq"].values.astype(np.complex64))


def test_a_store_another_process_creates_meanwhile_opens(tmp_path, monkeypatch) -> None:
    """Two calibrations starting on a new store at once: both look and see no directory,
    one creates it first; the other's mkdir must not fail (it did: 'File exists')."""
    path = tmp_path / "store"
    path.mkdir()  # the other process won the race after this one looked
    for name in ("is_dir", "exists"):
        real, first = getattr(Path, name), [True]

        def looked_before(self, real=real, first=first) -> bool:
            if self == path and first[0]:
                first[0] = False
                return False
            return real(self)

        monkeypatch.setattr(Path, name, looked_before)
    store = SnapshotStore(path)
    monkeypatch.undo()
    assert store.path == path and path.is_dir()
