"""Snapshot store API: round trips, diff, history, rollback, index rebuild."""

from __future__ import annotations

import json
import math
import os

import h5py
import numpy as np
import pytest
import snapshot_samples as samples
import xarray as xr

import fluxcal
from fluxcal.snapshots import (
    CalibratedParameter,
    DamagedSnapshot,
    ExperimentRecord,
    SnapshotStore,
    StoreError,
    UnknownVersion,
    decoded,
    experiment_group,
    layout,
)
from fluxcal.snapshots.packing import DTYPE_ATTR, unpack


@pytest.fixture
def store(tmp_path):
    return SnapshotStore(tmp_path / "store")


def as_stored(data: xr.Dataset) -> xr.Dataset:
    """`data` as a version file keeps it: averaged complex data at complex64 precision."""
    return data.map(
        lambda v: v.astype(np.complex64).astype(v.dtype) if v.dtype == np.complex128 else v,
        keep_attrs=True,
    )


def test_missing_store_without_create_raises(tmp_path):
    with pytest.raises(StoreError, match="no snapshot store"):
        SnapshotStore(tmp_path / "nope", create=False)
    assert not (tmp_path / "nope").exists()


def test_parameters_experiments_station_round_trip(store):
    params = samples.parameters(("q0", "q1"))
    exps = samples.experiments(("q0", "q1"), n=300)
    v = store.save(params, exps, samples.STATION, reason="daily", provenance={"flow_run_id": "r1"})
    assert v == 1
    assert store.current_version() == 1
    snap = store.load()
    assert (snap.version, snap.parent, snap.reason) == (1, -1, "daily")
    assert snap.provenance == {"flow_run_id": "r1"}
    assert snap.fluxcal_version == fluxcal.__version__
    assert snap.checksum.startswith("sha256:")
    assert snap.parameters.keys() == params.keys()
    for q in params:
        for name, p in params[q].items():
            got = snap.parameters[q][name]
            assert (got.value, got.unit, got.experiment, got.updated) == (
                p.value,
                p.unit,
                p.experiment,
                p.updated,
            )
            assert got.stderr == p.stderr or (math.isnan(got.stderr) and math.isnan(p.stderr))
    assert snap.station == samples.STATION
    assert snap.qubits == ["q0", "q1"]
    for q in ("q0", "q1"):
        back = snap.experiments(q)
        assert back.keys() == exps[q].keys()
        for name, rec in exps[q].items():
            got = back[name]
            assert (got.outcome, got.reason, got.report, got.updated) == (
                rec.outcome,
                rec.reason,
                rec.report,
                rec.updated,
            )
            np.testing.assert_equal(got.fit, rec.fit)
            if rec.data is None:
                assert got.data is None
            else:
                xr.testing.assert_identical(got.data, as_stored(rec.data))
    assert np.iscomplexobj(snap.experiments("q0")["ramsey"].data["iq"])


def test_raw_data_readable_with_xarray_and_h5py(store):
    exps = samples.experiments(n=200)
    store.save(samples.parameters(), exps, samples.STATION)
    path = store.path / "v000001.h5"
    original = exps["q0"]["qubit_flux_spectroscopy"].data
    group = experiment_group("q0", "qubit_flux_spectroscopy")
    assert group == "qubits/q0/experiments/qubit_flux_spectroscopy/data"
    with xr.open_dataset(path, engine="h5netcdf", group=group) as ds:
        assert ds["iq"].dtype == np.complex64 and ds["iq"].attrs[DTYPE_ATTR] == "complex128"
        xr.testing.assert_identical(unpack(ds.load()), as_stored(original))
        assert ds["iq"].dims == ("flux", "frequency") and ds["iq"].shape == (41, 201)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "fluxcal-snapshot"
        assert f.attrs["format_version"] == 2
        assert (f.attrs["version"], f.attrs["parent"]) == (1, -1)
        assert json.loads(f.attrs["provenance"]) == {}
        t1 = f["qubits/q0/parameters/T1"].attrs
        assert (t1["value"], t1["stderr"], t1["unit"], t1["experiment"]) == (
            2.1e-4,
            1e-5,
            "s",
            "t1",
        )
        iq = f[f"{group}/iq"][()]
        assert iq.dtype == np.complex64
        np.testing.assert_array_equal(iq, original["iq"].values.astype(np.complex64))
        np.testing.assert_array_equal(f[f"{group}/frequency"][()], original["frequency"].values)
        ramsey = f["qubits/q0/experiments/ramsey"]
        assert ramsey.attrs["outcome"] == "accepted"
        assert ramsey["fit/amplitude"].attrs["value"] == 1.5
        assert json.loads(f["station"][()]) == samples.STATION


def test_invalid_names_and_outcomes_are_rejected(store):
    p = samples.parameters()["q0"]["T1"]
    with pytest.raises(ValueError, match="no '/'"):
        store.save({"q/0": {"T1": p}})
    with pytest.raises(ValueError, match="outcome"):
        ExperimentRecord(None, {}, "maybe", "")
    assert store.versions() == []
    assert [e.name for e in store.path.iterdir() if e.name.startswith(".v")] == []


def test_versions_parent_chain_and_make_current(store):
    v1 = store.save(samples.parameters(), reason="a")
    v2 = store.save(samples.parameters(shift=1), reason="b")
    v3 = store.save(samples.parameters(shift=2), reason="trial", make_current=False)
    v4 = store.save(samples.parameters(shift=3), reason="explicit", parent=v1)
    infos = store.versions()
    assert [i.version for i in infos] == [1, 2, 3, 4]
    assert [(i.parent, i.reason) for i in infos] == [
        (-1, "a"),
        (v1, "b"),
        (v2, "trial"),
        (v1, "explicit"),
    ]
    assert store.current_version() == v4
    assert v3 == 3 and store.load(v3).reason == "trial"
    with pytest.raises(UnknownVersion, match="no version 9"):
        store.load(9)


def test_empty_store(store):
    assert store.versions() == []
    assert store.current_version() is None
    assert store.verify() == []
    with pytest.raises(UnknownVersion, match="no current version"):
        store.load()


def test_diff_reports_changes_in_stderr_units_and_added_removed(store):
    a = samples.parameters()
    b = samples.parameters()
    t1 = a["q0"]["T1"]
    b["q0"]["T1"] = CalibratedParameter(t1.value + 3e-5, 2e-5, "s", "t1", "later")
    del b["q0"]["EL"]
    b["q0"]["chi"] = CalibratedParameter(-268e3, 2e3, "Hz", "readout", "later")
    b["q0"]["readout_amplitude"] = CalibratedParameter(0.06, math.nan, "V", "ro", "later")
    va, vb = store.save(a), store.save(b)
    changes = {(c.qubit, c.name): c for c in store.diff(va, vb)}
    assert set(changes) == {("q0", "T1"), ("q0", "EL"), ("q0", "chi"), ("q0", "readout_amplitude")}
    t1c = changes["q0", "T1"]
    assert t1c.kind == "changed" and t1c.unit == "s"
    assert t1c.delta == pytest.approx(3e-5)
    assert t1c.delta_sigma == pytest.approx(3e-5 / math.hypot(1e-5, 2e-5))
    assert changes["q0", "EL"].kind == "removed" and changes["q0", "EL"].new is None
    assert changes["q0", "chi"].kind == "added" and changes["q0", "chi"].old is None
    assert math.isnan(changes["q0", "chi"].delta)
    ro = changes["q0", "readout_amplitude"]
    assert ro.delta == pytest.approx(0.01) and math.isnan(ro.delta_sigma)
    assert store.diff(va, va) == []
    with pytest.raises(UnknownVersion):
        store.diff(va, 42)


def test_history_of_one_parameter(store):
    for shift in range(5):
        store.save(samples.parameters(shift=shift))
    store.save({"q1": samples.parameters(("q1",))["q1"]})  # q0 absent from v6
    hist = store.history("q0", "T1")
    assert [v for v, _ in hist] == [1, 2, 3, 4, 5]
    assert [p.value for _, p in hist] == pytest.approx([2.1e-4 + s * 1e-5 for s in range(5)])
    assert all(p.unit == "s" for _, p in hist)
    assert store.history("q0", "nonexistent") == []


def test_rollback_copies_content_into_a_new_version(store):
    exps = samples.experiments(n=100)
    v1 = store.save(samples.parameters(), exps, samples.STATION, provenance={"flow_run_id": "a"})
    v2 = store.save(samples.parameters(shift=4), reason="bad calibration")
    v3 = store.rollback(v1, reason="T1 fit wrong")
    assert v3 == 3 and store.current_version() == v3
    new, old = store.load(v3), store.load(v1)
    assert new.parent == v2
    assert new.reason == "rollback to v1: T1 fit wrong"
    assert new.provenance == {"flow_run_id": "a", "rollback_of": "1"}
    assert store.diff(v1, v3) == []
    assert new.parameters.keys() == old.parameters.keys()
    assert new.station == old.station
    back = new.experiments("q0")
    for name, rec in exps["q0"].items():
        np.testing.assert_equal(back[name].fit, rec.fit)
        if rec.data is not None:
            xr.testing.assert_identical(back[name].data, as_stored(rec.data))
    assert store.load(v2).reason == "bad calibration"  # history untouched
    with pytest.raises(UnknownVersion):
        store.rollback(99)


def test_index_is_rebuilt_after_deletion_and_extended_when_stale(store):
    for shift in range(3):
        store.save(samples.parameters(shift=shift), reason=f"r{shift}")
    before = store.versions()
    hist = store.history("q0", "qubit_frequency")
    os.remove(store.path / "index.json")
    fresh = SnapshotStore(store.path)
    assert fresh.versions() == before
    assert fresh.history("q0", "qubit_frequency") == hist
    assert (store.path / "index.json").exists()
    assert fresh.verify() == []
    # A version file the index does not know (e.g. writer killed before the index update).
    index = json.loads((store.path / "index.json").read_text())
    del index["versions"]["3"]
    (store.path / "index.json").write_text(json.dumps(index))
    assert [i.version for i in SnapshotStore(store.path).versions()] == [1, 2, 3]
    store.rebuild_index()
    assert store.versions() == before


def test_unknown_stderr_round_trips_as_nan(store):
    p = CalibratedParameter(1.0, math.nan, "", "x", "t")
    store.save({"q0": {"p": p}})
    assert math.isnan(store.load().parameters["q0"]["p"].stderr)
    assert math.isnan(store.history("q0", "p")[0][1].stderr)


def test_a_version_read_again_is_not_decoded_again_unless_its_bytes_changed(
    store, tmp_path, monkeypatch
):
    """Its bytes fix a version's content (`layout.read_version`): a second read of the same
    bytes, in this store or in a copy, skips the object-by-object check; a changed byte is
    checked in full and refused, and every reader gets a snapshot of its own."""
    store.save(samples.parameters(), samples.experiments(n=20), samples.STATION)
    decoded.forget()  # another test may have saved the same bytes within the same second
    decode = layout._decode
    seen = []

    def counted(f, path):
        seen.append(path.name)
        return decode(f, path)

    monkeypatch.setattr(layout, "_decode", counted)
    first = store.load(1)
    first.parameters["q0"].clear()  # the reader's own copy
    again = store.load(1)
    assert seen == ["v000001.h5"]
    assert again.parameters["q0"].keys() == samples.BASE.keys()
    assert again.parameters["q0"]["T1"] == samples.parameters()["q0"]["T1"]
    assert again.experiments("q0")["ramsey"].data is not None  # raw data read on demand
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "v000001.h5").write_bytes((store.path / "v000001.h5").read_bytes())
    assert layout.read_version(copy / "v000001.h5").path == copy / "v000001.h5"
    assert seen == ["v000001.h5"]
    with h5py.File(copy / "v000001.h5", "r+") as f:  # one value changed, checksum kept
        f["qubits/q0/parameters/T1"].attrs["value"] = 2 * samples.BASE["T1"][0]
    with pytest.raises(DamagedSnapshot, match="content checksum mismatch"):
        layout.read_version(copy / "v000001.h5")
    with pytest.raises(DamagedSnapshot, match="content checksum mismatch"):
        layout.read_version(copy / "v000001.h5")  # refused again: damage is never kept
    assert seen == ["v000001.h5"] * 3


def test_the_decoded_versions_kept_stay_within_their_memory_bound(store, monkeypatch):
    for shift in range(6):
        store.save(samples.parameters(shift=shift))
    digest = {v: layout.file_sha256(store.path / f"v{v:06d}.h5") for v in range(1, 7)}
    decoded.forget()
    size = {v: len(decoded.pickle.dumps(store.load(v))) for v in range(1, 7)}
    decoded.forget()
    monkeypatch.setattr(decoded, "MAX_BYTES", size[4] + size[5] + size[6])
    for version in range(1, 7):
        store.load(version)
    assert set(decoded._kept) == {digest[4], digest[5], digest[6]}  # the three read last
    store.load(4)  # now the one read last
    store.load(1)  # decoded again: the least recently read go first
    assert {digest[4], digest[1]} <= set(decoded._kept) and digest[5] not in decoded._kept
    assert decoded._held == sum(map(len, decoded._kept.values())) <= decoded.MAX_BYTES
    decoded.forget()
    monkeypatch.setattr(decoded, "MAX_BYTES", size[1] - 1)  # one alone is over the bound
    store.load(1)
    assert not decoded._kept
