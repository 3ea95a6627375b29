"""Writer processes for the snapshot crash and concurrency tests (run as a script).

    snapshot_writer_proc.py save STORE N TAG
        print "ready", wait for "go" on stdin, save N small versions, print each number.
    snapshot_writer_proc.py forkserver STORE
        import everything once, print "ready", then serve stdin commands:
        "spawn"   fork a child that saves sizeable versions in a loop; print "pid <pid>"
        "reap P"  wait for child P (the test SIGKILLs it first); print "reaped <P> <status>"
        EOF       exit.
The fork server exists because importing xarray/h5py costs about a second per process, and
the crash test needs dozens of independent real processes to kill. Run as a script, this
file's directory is on sys.path, so the sibling module snapshot_samples imports directly.
"""

from __future__ import annotations

import os
import sys
import tempfile

import snapshot_samples as samples

from fluxcal.snapshots import ExperimentRecord, SnapshotStore

CRASH_POINTS = 60_000  # complex samples per crash-test version (~1 MB): a save takes tens of ms
MAX_CHILD_SAVES = 50  # a child that is somehow not killed still ends


def save_loop(store_dir: str, n: int, tag: str) -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit(2)
    store = SnapshotStore(store_dir)
    data = {"q0": {"t1": ExperimentRecord(samples.iq_dataset(200, 1), {}, "accepted", "ok")}}
    for i in range(n):
        v = store.save(
            samples.parameters(shift=i),
            data,
            reason=f"{tag} #{i}",
            provenance={"writer": tag, "seq": str(i)},
        )
        print(v, flush=True)


def crash_child(store_dir: str) -> None:
    """Runs in a forked child until SIGKILLed; never returns to the server's loop."""
    try:
        store = SnapshotStore(store_dir, lock_timeout=30)
        data = {
            "q0": {
                "ramsey": ExperimentRecord(samples.iq_dataset(CRASH_POINTS, 2), {}, "accepted", "")
            }
        }
        for i in range(MAX_CHILD_SAVES):
            store.save(samples.parameters(shift=i), data, reason=f"crash child {os.getpid()}")
    finally:
        os._exit(0)


def fork_server(store_dir: str) -> None:
    with tempfile.TemporaryDirectory() as warm:  # load lazy imports and backends before forking
        SnapshotStore(warm).save(samples.parameters(), samples.experiments(n=10))
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd == ["spawn"]:
            pid = os.fork()
            if pid == 0:
                crash_child(store_dir)
            print(f"pid {pid}", flush=True)
        elif len(cmd) == 2 and cmd[0] == "reap":
            _, status = os.waitpid(int(cmd[1]), 0)
            print(f"reaped {cmd[1]} {status}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "save":
        save_loop(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "forkserver":
        fork_server(sys.argv[2])
    else:
        sys.exit(f"unknown mode {sys.argv[1]!r}")
