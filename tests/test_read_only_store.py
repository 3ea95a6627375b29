"""A store this process cannot write (issue 15): calibrating fails at once in one line, and
everything that only reads still works.

"Read-only" is made two ways. `kernel`: the kernel refuses the writes, through permissions
for a user, or through `chattr +i` for root, whom permissions do not stop (skipped where
neither binds, e.g. root without CAP_LINUX_IMMUTABLE). `simulated`: every write under the
store raises EROFS at the os-level calls the store, its lock and the run files use, as a
read-only mount would; it runs everywhere, but cannot refuse what C code (SQLite, HDF5)
writes, so the kernel case is the proof and the simulation the fallback.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

import fluxcal.calibrate
from fluxcal.cli import app
from fluxcal.snapshots import SnapshotStore
from fluxcal.snapshots.store import LOCK_NAME

CHEAP = ["--qubit", "q0", "--node", "resonator_search"]
READS = [
    ["snapshots", "list"],
    ["snapshots", "show", "1"],
    ["snapshots", "history", "q0", "readout_frequency"],
    ["snapshots", "diff", "1", "current"],
    ["snapshots", "verify"],
    ["snapshots", "current", "--json"],
]


def invoke(args: list[str], store: Path):
    return CliRunner().invoke(app, [*args, "--store", str(store)])


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """A store as a calibration leaves it: one version, its lock file, journal and runs."""
    store = tmp_path_factory.mktemp("written") / "store"
    result = invoke(["calibrate", *CHEAP], store)
    assert result.exit_code == 0, result.output
    return store


def fingerprint(root: Path) -> dict[str, tuple]:
    """Every entry under `root` with its type, size, mtime and content digest: any write,
    even a file created and removed again (the folder's mtime), changes it."""
    found = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        found[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return found


@contextmanager
def kernel_read_only(root: Path) -> Iterator[None]:
    """Make `root` read-only for this process; skip where that cannot bind it."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("root ignores permissions and chattr is missing")
        make, undo = ["chattr", "-R", "+i", str(root)], ["chattr", "-R", "-i", str(root)]
    else:
        make, undo = ["chmod", "-R", "a-w", str(root)], ["chmod", "-R", "u+w", str(root)]
    try:
        if subprocess.run(make, capture_output=True, timeout=30).returncode != 0:
            pytest.skip(f"{make[0]} cannot make {root} read-only here")
        try:
            (root / "probe").touch()
        except OSError:
            yield
            return
        (root / "probe").unlink()
        pytest.skip(f"{make[0]} does not stop this process writing")
    finally:
        subprocess.run(undo, capture_output=True, timeout=30)


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@contextmanager
def simulated_read_only(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every os-level write under `root` raises EROFS, as on a read-only mount."""

    def inside(path) -> bool:
        if isinstance(path, int):  # a file descriptor, already open
            return False
        return os.path.abspath(os.fsdecode(path)).startswith(str(root))

    def refuse(path) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    def guard(real: Callable, is_write: Callable[..., bool]) -> Callable:
        def guarded(path, *args, **kwargs):
            if inside(path) and is_write(*args, **kwargs):
                refuse(path)
            return real(path, *args, **kwargs)

        return guarded

    def open_writes(flags=0, *args, **kwargs) -> bool:
        return bool(flags & _WRITE_FLAGS)

    def io_writes(mode="r", *args, **kwargs) -> bool:
        return any(c in mode for c in "wax+")

    def always(*args, **kwargs) -> bool:
        return True

    monkeypatch.setattr(os, "open", guard(os.open, open_writes))
    monkeypatch.setattr(io, "open", guard(io.open, io_writes))
    monkeypatch.setattr("builtins.open", guard(open, io_writes))
    for name in ("mkdir", "rename", "replace", "unlink", "rmdir"):
        monkeypatch.setattr(os, name, guard(getattr(os, name), always))
    yield


@pytest.fixture(params=["kernel", "simulated"])
def read_only(request, monkeypatch) -> Callable[[Path], AbstractContextManager[None]]:
    """read_only(store): a context in which this process cannot write `store`."""
    if request.param == "kernel":
        return kernel_read_only
    return lambda root: simulated_read_only(root, monkeypatch)


@pytest.fixture
def no_chain(monkeypatch) -> list:
    """Calls of the calibration chain: a store that cannot be written must not reach it."""
    calls: list = []
    monkeypatch.setattr(fluxcal.calibrate, "run_graph", lambda *a, **k: calls.append(a))
    return calls


def test_calibrate_fails_in_one_line_before_spending_device_time(
    written, tmp_path, read_only, no_chain
):
    store = tmp_path / "store"
    shutil.copytree(written, store)
    before = fingerprint(store)
    with read_only(store):
        result = invoke(["calibrate", *CHEAP], store)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot write to store {store}: "), line
    assert no_chain == []
    assert fingerprint(store) == before


@pytest.mark.parametrize("args", READS, ids=[" ".join(a[1:]) for a in READS])
def test_reading_needs_no_lock_file_and_no_journal(written, tmp_path, read_only, args):
    """A store published without its lock file or run journal (both are made by writers)."""
    store = tmp_path / "store"
    shutil.copytree(written, store)
    (store / LOCK_NAME).unlink()
    shutil.rmtree(store / "journal")
    before = fingerprint(store)
    with read_only(store):
        result = invoke(args, store)
    assert result.exit_code == 0, result.output
    assert "error" not in result.stderr
    assert fingerprint(store) == before
    if args[-1] == "--json":
        assert json.loads(result.stdout)["version"] == 1


def test_a_store_without_its_index_is_listed_from_memory(written, tmp_path, read_only):
    """The index is rebuilt under the lock when it can be; a read-only store cannot give the
    lock, so readers rebuild it in memory instead of failing or waiting."""
    store = tmp_path / "store"
    shutil.copytree(written, store)
    (store / "index.json").unlink()
    (store / LOCK_NAME).unlink()
    before = fingerprint(store)
    with read_only(store):
        listed = invoke(["snapshots", "list", "--json"], store)
        assert listed.exit_code == 0, listed.output
        assert [v["version"] for v in json.loads(listed.stdout)] == [1]
        assert SnapshotStore(store, create=False).load().version == 1
    assert fingerprint(store) == before
