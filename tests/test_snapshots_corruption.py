"""Damaged version files are found by verify, refused by load, and do not block the store."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import pytest
import snapshot_samples as samples

from fluxcal.snapshots import DamagedSnapshot, SnapshotStore


def _flip_bit_in_dataset(path, dataset: str, byte: int) -> None:
    """Flip one bit inside the stored (compressed) bytes of a dataset's first chunk."""
    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset + byte)
        value = fh.read(1)[0]
        fh.seek(offset + byte)
        fh.write(bytes([value ^ 0x10]))


def _flip_bit_at(path, position: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(position)
        value = fh.read(1)[0]
        fh.seek(position)
        fh.write(bytes([value ^ 0x01]))


@pytest.fixture(scope="module")
def five_versions(tmp_path_factory) -> Path:
    """A store of five versions with raw data, saved once for the module."""
    path = tmp_path_factory.mktemp("saved") / "store"
    store = SnapshotStore(path)
    for shift in range(5):
        store.save(samples.parameters(shift=shift), samples.experiments(n=50, seed=shift))
    return path


@pytest.fixture
def store(five_versions, tmp_path):
    """A copy of the five saved versions for each test to damage: the same bytes as saving
    them again, without the processor time and disk syncs of five saves per test."""
    shutil.copytree(five_versions, tmp_path / "store", symlinks=True)
    return SnapshotStore(tmp_path / "store")


def test_truncation_and_bit_flip_are_reported_and_refused(store):
    v2, v4 = store.path / "v000002.h5", store.path / "v000004.h5"
    with open(v2, "r+b") as fh:
        fh.truncate(os.path.getsize(v2) // 2)
    _flip_bit_in_dataset(v4, "qubits/q0/experiments/ramsey/data/iq", byte=37)

    problems = store.verify()
    assert [(p.kind, p.version) for p in problems] == [("damaged", 2), ("damaged", 4)]
    assert all("\n" not in p.message for p in problems)
    # inside a gzip stream the flip fails zlib's own check before the content checksum
    assert "v000004.h5 is damaged" in problems[1].message
    for v in (2, 4):
        with pytest.raises(DamagedSnapshot, match=f"v00000{v}.h5 is damaged"):
            store.load(v)
    for v in (1, 3, 5):
        assert store.load(v).version == v
    v6 = store.save(samples.parameters(shift=9))
    assert store.load(v6).parent == 5
    assert [(p.kind, p.version) for p in store.verify()] == [("damaged", 2), ("damaged", 4)]
    assert os.path.getsize(v2) > 0  # verify never repairs or deletes


def test_bit_flip_anywhere_is_caught_by_the_recorded_file_hash(store):
    path = store.path / "v000003.h5"
    _flip_bit_at(path, os.path.getsize(path) - 3)  # wherever it lands: data, metadata, padding
    assert [(p.kind, p.version) for p in store.verify()] == [("damaged", 3)]
    with pytest.raises(DamagedSnapshot):
        store.load(3)


def test_parameter_attribute_flip_is_caught_by_content_checksum_alone(store):
    """Even without the index (e.g. after a rebuild), the embedded checksum covers parameters."""
    path = store.path / "v000001.h5"
    with h5py.File(path, "r+") as f:  # a silent value change that keeps the file valid HDF5
        f["qubits/q0/parameters/T1"].attrs["value"] = 1.0
    os.remove(store.path / "index.json")
    fresh = SnapshotStore(store.path)
    assert [i.version for i in fresh.versions()] == [2, 3, 4, 5]  # damaged file not listed
    with pytest.raises(DamagedSnapshot, match="checksum mismatch"):
        fresh.load(1)
    problems = fresh.verify()
    assert [(p.kind, p.version) for p in problems] == [("damaged", 1)]
    with pytest.raises(DamagedSnapshot):
        fresh.diff(1, 2)


def test_bad_pointer_and_stale_index_are_reported(store):
    (store.path / "CURRENT").write_text("v000099.h5\n")
    index = json.loads((store.path / "index.json").read_text())
    del index["versions"]["5"]
    (store.path / "index.json").write_text(json.dumps(index))
    problems = {(p.kind, p.version) for p in store.verify()}
    assert problems == {("pointer", 99), ("index", 5)}
    (store.path / "CURRENT").write_text("garbage")
    assert ("pointer", None) in {(p.kind, p.version) for p in store.verify()}
