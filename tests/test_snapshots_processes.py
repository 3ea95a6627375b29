"""Crash safety and concurrency with real processes: SIGKILL mid-save, parallel writers."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import snapshot_samples as samples

from fluxcal.snapshots import SnapshotStore

HELPER = Path(__file__).with_name("snapshot_writer_proc.py")
TRIALS = 60


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    """One line from an unbuffered pipe, failing instead of hanging if the helper stalls."""
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            raise TimeoutError(f"no line from helper within {timeout} s (got {buf!r})")
        chunk = os.read(proc.stdout.fileno(), 1)
        if not chunk:
            raise EOFError(f"helper exited (rc={proc.poll()}), got {buf!r}")
        buf += chunk
    return buf.decode().strip()


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(HELPER), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
    )


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def _send(proc: subprocess.Popen, line: str) -> None:
    proc.stdin.write(line.encode() + b"\n")


def _version_files(path: Path) -> dict[str, tuple[int, int, int]]:
    return {
        e.name: (e.stat().st_ino, e.stat().st_size, e.stat().st_mtime_ns)
        for e in os.scandir(path)
        if e.name.endswith(".h5") and not e.name.startswith(".")
    }


@pytest.mark.timeout(180)
def test_sigkill_at_random_moments_never_damages_the_store(tmp_path):
    rng = random.Random(20251125)
    path = tmp_path / "store"
    store = SnapshotStore(path, lock_timeout=10)
    store.save(samples.parameters(), reason="baseline")
    server = _start("forkserver", str(path))
    temp_seen = 0
    try:
        assert _readline(server, 60) == "ready"
        for trial in range(TRIALS):
            before = _version_files(path)
            _send(server, "spawn")
            pid = int(_readline(server, 10).split()[1])
            time.sleep(rng.uniform(0.005, 0.080))
            os.kill(pid, signal.SIGKILL)
            _send(server, f"reap {pid}")
            reaped = _readline(server, 10).split()
            assert reaped[:2] == ["reaped", str(pid)]
            assert os.WIFSIGNALED(int(reaped[2])), f"trial {trial}: child ended before the kill"
            temp_seen += any(name.startswith(".") and ".tmp-" in name for name in os.listdir(path))

            after = _version_files(path)
            for name, stat in before.items():  # earlier versions untouched (immutable)
                assert after[name] == stat, f"trial {trial}: {name} changed"
            listed = [i.version for i in store.versions()]  # extends the index if stale
            assert [f"v{v:06d}.h5" for v in listed] == sorted(after)  # no temp file is listed
            for name in after.keys() - before.keys():
                store.load(int(name[1:7]))  # checksums of versions the child completed
            current = store.current_version()
            assert current in listed
            assert store.load(current).version == current
            # The lock died with the child: the parent saves at once (lock_timeout=10 s).
            started = time.monotonic()
            v = store.save(samples.parameters(shift=-1), reason=f"after kill {trial}")
            assert time.monotonic() - started < 5
            assert store.current_version() == v
            assert not [n for n in os.listdir(path) if ".tmp-" in n]  # orphans cleaned up
    finally:
        server.stdin.close()
        _stop([server])
    assert store.verify() == []
    assert temp_seen > 0, "no kill landed inside a write; the test did not test anything"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("n_procs", [2, 4])
def test_concurrent_writers_get_distinct_versions(tmp_path, n_procs):
    path = tmp_path / "store"
    SnapshotStore(path)
    per_proc = 10
    procs = [_start("save", str(path), str(per_proc), f"w{i}") for i in range(n_procs)]
    try:
        for p in procs:
            assert _readline(p, 60) == "ready"
        for p in procs:
            _send(p, "go")
        got = {
            f"w{i}": [int(_readline(p, 60)) for _ in range(per_proc)] for i, p in enumerate(procs)
        }
        for p in procs:
            assert p.wait(timeout=30) == 0
    finally:
        _stop(procs)
    every = [v for vs in got.values() for v in vs]
    assert sorted(every) == list(range(1, n_procs * per_proc + 1))
    store = SnapshotStore(path)
    infos = store.versions()
    assert [i.version for i in infos] == sorted(every)
    for tag, versions in got.items():
        assert [store.load(v).provenance["writer"] for v in versions] == [tag] * per_proc
        assert versions == sorted(versions)
    assert store.verify() == []
