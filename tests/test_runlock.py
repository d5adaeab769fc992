"""One writer per run directory: the lock file, its refusal and stale-lock recovery."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from srl import runlock
from srl.errors import RunDirectoryError, RunLockedError

HOLD = """
import sys, time
from srl import runlock
lock = runlock.acquire(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def _holder_process(directory):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_acquire_is_refused_naming_the_holder(tmp_path):
    with runlock.acquire(tmp_path) as lock:
        assert lock.info["pid"] == os.getpid()
        with pytest.raises(RunLockedError, match=rf"in use by process {os.getpid()} on host "):
            runlock.acquire(tmp_path)
    assert not (tmp_path / runlock.LOCK_NAME).exists()  # released on leaving the block
    runlock.acquire(tmp_path).release()  # and can be taken again


def test_lock_held_by_another_live_process_is_refused(tmp_path):
    proc = _holder_process(tmp_path)
    try:
        with pytest.raises(RunLockedError, match=rf"process {proc.pid} on host {socket.gethostname()}"):
            runlock.acquire(tmp_path)
        assert issubclass(RunLockedError, RunDirectoryError) and issubclass(RunLockedError, ValueError)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_lock_of_a_holder_killed_with_sigkill_is_cleared(tmp_path):
    proc = _holder_process(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert runlock.holder(tmp_path)["pid"] == proc.pid  # the dead holder could not remove it
    with pytest.warns(runlock.StaleLockWarning, match=rf"stale lock .* of process {proc.pid} on host"):
        lock = runlock.acquire(tmp_path)
    assert runlock.holder(tmp_path) == lock.info and lock.info["pid"] == os.getpid()
    lock.release()
    assert sorted(os.listdir(tmp_path)) == []  # nothing left beside it


def test_reused_pid_does_not_keep_a_lock(tmp_path):
    # our own pid is alive, but this process started long after the recorded start time
    (tmp_path / runlock.LOCK_NAME).write_text(json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time() - 10 * 365 * 86400}))
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("process start times come from /proc")
    with pytest.warns(runlock.StaleLockWarning):
        runlock.acquire(tmp_path).release()


def test_lock_of_another_host_is_never_cleared(tmp_path):
    path = tmp_path / runlock.LOCK_NAME
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "started": 0.0}))
    with pytest.raises(RunLockedError, match=r"host elsewhere\.example.*delete .*\.srl\.lock"):
        runlock.acquire(tmp_path)
    assert path.exists()


def test_unreadable_lock_is_cleared_only_when_old(tmp_path):
    path = tmp_path / runlock.LOCK_NAME
    path.write_text("")  # a holder that died between creating and writing the file
    with pytest.raises(RunLockedError, match="has not finished writing it"):
        runlock.acquire(tmp_path)
    old = time.time() - 60
    os.utime(path, (old, old))
    with pytest.warns(runlock.StaleLockWarning):
        runlock.acquire(tmp_path).release()


def test_release_leaves_a_lock_that_is_not_ours(tmp_path):
    lock = runlock.acquire(tmp_path)
    other = {"pid": 1, "host": "elsewhere.example", "started": 0.0}
    (tmp_path / runlock.LOCK_NAME).write_text(json.dumps(other))
    lock.release()
    assert runlock.holder(tmp_path) == other


RACE = """
import os, sys, time
from srl import runlock
from srl.errors import RunLockedError
go = float(sys.argv[2])
while time.time() < go:
    time.sleep(0.001)
try:
    lock = runlock.acquire(sys.argv[1])
except RunLockedError:
    print("refused", flush=True)
else:
    print("locked", flush=True)
    while not os.path.exists(sys.argv[3]):  # hold the lock until every process has tried
        time.sleep(0.01)
    lock.release()
"""


def test_concurrent_acquires_let_exactly_one_through(tmp_path):
    run, done = tmp_path / "run", tmp_path / "done"
    run.mkdir()
    go = time.time() + 1.5  # most interpreters have started by then; a late one still finds the lock held
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(run), repr(go), str(done)], stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    results = sorted(p.stdout.readline().strip() for p in procs)
    done.touch()
    for p in procs:
        p.communicate(timeout=60)
    assert results == ["locked", "refused", "refused", "refused"]
    assert not (run / runlock.LOCK_NAME).exists()
