"""One writer per run directory: an exclusive lock file with the holder's identity.

``acquire(directory)`` creates ``directory/.srl.lock`` with ``O_CREAT | O_EXCL`` (atomic:
of two processes, exactly one creates it) and writes the holder's pid, host name and
start time into it. A second ``srl train`` on the same directory finds the file and is
refused with :class:`RunLockedError`, which names the holder.

A holder killed with ``kill -9`` cannot remove its lock. The next ``acquire`` therefore
checks the recorded holder: when it ran on this host and its pid is no longer alive (or
now belongs to a process started after the lock was taken, i.e. the pid was reused), the
lock is stale; it is removed with a :class:`StaleLockWarning` saying whose it was, and
the lock is taken. A lock of another host cannot be checked and is never cleared
automatically: the refusal says which file to delete once that run is known to be gone.

    with runlock.acquire("runs/digits"):
        ...  # write the run
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path

from .errors import RunLockedError

__all__ = ["LOCK_NAME", "RunLock", "RunLockedError", "StaleLockWarning", "acquire", "holder"]

#: the lock file's name inside the run directory
LOCK_NAME = ".srl.lock"


class StaleLockWarning(UserWarning):
    """A lock left by a process that no longer runs was removed."""


def _describe(info: dict) -> str:
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if isinstance(started, (int, float)) else "?"
    return f"process {info.get('pid', '?')} on host {info.get('host', '?')}, started {when}"


def holder(directory) -> dict | None:
    """The recorded holder ``{"pid", "host", "started"}`` of ``directory``'s lock, or None.

    A lock file that cannot be parsed (e.g. its holder died between creating and writing
    it) gives ``{}``.
    """
    try:
        text = (Path(directory) / LOCK_NAME).read_text()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _process_start_time(pid: int) -> float | None:
    """Start time (seconds since the epoch) of a live process, where /proc tells it; else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime in clock ticks
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].startswith("Z")


def _alive(info: dict) -> bool:
    """Whether the holder recorded in ``info`` (on this host) still runs."""
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    if _is_zombie(pid):
        return False
    started, proc_started = info.get("started"), _process_start_time(pid)
    # a process started after the lock was written is not its holder (the pid was reused);
    # 2 s covers the clock-tick rounding of /proc's start time
    if isinstance(started, (int, float)) and proc_started is not None and proc_started > started + 2.0:
        return False
    return True


def _older_than(path: Path, seconds: float) -> bool:
    """Whether ``path`` was last modified more than ``seconds`` ago (an unreadable lock this old
    was left by a holder that died before writing its identity)."""
    try:
        return time.time() - path.stat().st_mtime > seconds
    except FileNotFoundError:
        return False


class RunLock:
    """A held lock on a run directory; ``release()`` (or leaving the ``with`` block) frees it."""

    def __init__(self, path: Path, info: dict):
        self.path, self.info = path, info

    def release(self) -> None:
        """Remove the lock file if it is still this process's lock."""
        if holder(self.path.parent) == self.info:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def _clear_stale(path: Path, seen: dict) -> None:
    """Remove the stale lock ``seen`` unless another process replaced it meanwhile."""
    aside = path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
    try:
        os.rename(path, aside)  # atomic: only one process moves a given file
    except FileNotFoundError:
        return  # someone else cleared it first
    try:
        moved = json.loads(aside.read_text())
    except (OSError, ValueError):
        moved = {}
    if moved != seen and moved:  # a live lock was taken between our read and the rename: put it back
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
    aside.unlink()
    if moved == seen:
        warnings.warn(f"removed the stale lock {path} of {_describe(seen)}, which no longer runs",
                      StaleLockWarning, stacklevel=3)


def acquire(directory) -> RunLock:
    """Lock ``directory`` (which must exist) for this process, or raise :class:`RunLockedError`."""
    directory = Path(directory)
    path = directory / LOCK_NAME
    me = socket.gethostname()
    for _ in range(5):  # a stale lock cleared by a racing process: look again
        info = {"pid": os.getpid(), "host": me, "started": time.time()}
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # less the umask, like other outputs
        except FileExistsError:
            seen = holder(directory)
            if seen is None:
                continue  # released meanwhile
            if (seen.get("host") == me and not _alive(seen)) or (not seen and _older_than(path, 10.0)):
                _clear_stale(path, seen)
                continue
            if not seen:
                what = "a process that has not finished writing it yet (or died while doing so)"
            else:
                what = _describe(seen)
            raise RunLockedError(
                f"run directory {directory} is in use by {what}; wait for that run to finish, or use another "
                f"--out. If no such run is active, delete {path}"
            ) from None
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(info))
        return RunLock(path, info)
    raise RunLockedError(f"could not lock run directory {directory}: its lock {path} keeps changing; "
                         "another process is starting a run there")
