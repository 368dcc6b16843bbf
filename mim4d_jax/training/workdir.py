"""An exclusive lock on a training workdir: one trainer per workdir.

Two trainers on one workdir would replace each other's checkpoints, rewrite config.json and
interleave metrics.jsonl. The trainer (process 0 of a multi-process run: the others share its
workdir and its fate) therefore holds `<workdir>/lock.json` for its whole run:

  {"host": ..., "pid": ..., "started": ISO time, "process": <boot id + start ticks>,
   "argv": [...]}

Local (and mounted shared) folders: the lock is written under a temporary name and then
hard-linked to `lock.json`; the link fails when the name exists, so creation is atomic and a
reader never sees half a lock. An existing lock is checked:
- held by a process on this host that is still running (the same pid with the same start
  time since the same boot): refused, naming host, pid and start time;
- held by a process on this host that has exited (killed, crashed, the host rebooted): the
  lock is stale; it is taken over with a warning;
- held by another host: that host's processes cannot be seen from here, so it is refused with
  the command that clears it once you know that run is gone (a node that crashed on a shared
  file system leaves such a lock behind).
gs:// workdirs: object stores have no create-if-absent through this API, so the check and the
write are two steps, and two trainers started within the same second can both pass; the lock
still refuses every later start. Release deletes the lock only if it is still ours.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import uuid
from typing import Any

from absl import logging
from etils import epath

from mim4d_jax.user_errors import WorkdirLockedError

LOCK_NAME = "lock.json"


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def process_identity(pid: int) -> str | None:
    """'<boot id>:<start ticks>' of a running local process, None if it does not run.

    A pid alone can be reused by an unrelated process after the lock holder died; the start
    time (field 22 of /proc/<pid>/stat) since the same boot cannot.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (not Linux): fall back to "does the pid exist"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return f"pid:{pid}"
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return f"{_boot_id()}:{fields[19]}"


def _is_local(path: epath.Path) -> bool:
    return "://" not in os.fspath(path)


class WorkdirLock:
    """Context manager holding `<workdir>/lock.json`; raises WorkdirLockedError on entry
    when another run holds it."""

    def __init__(self, workdir: str | os.PathLike, *, argv: list[str] | None = None) -> None:
        text = os.fspath(workdir)
        self.workdir = epath.Path(text if "://" in text else os.path.abspath(text))
        self.path = self.workdir / LOCK_NAME
        self.record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "process": process_identity(os.getpid()),
            "argv": list(sys.argv if argv is None else argv),
        }
        self.held = False

    # ---- taking and releasing ----

    def acquire(self) -> WorkdirLock:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a stale lock taken over, then a race lost, ends the loop
            if self._create():
                self.held = True
                return self
            holder = self._read()
            if holder is None:  # released between our attempt and the read: try again
                continue
            if not self._stale(holder):
                raise WorkdirLockedError(self._describe(holder), hint=self._hint(holder))
            self._take_over(holder)
        raise WorkdirLockedError(
            f"{self.path}: could not take the lock (other trainers keep replacing it)",
            hint="stop the other trainers on this workdir",
        )

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        holder = self._read()
        if holder is not None and self._same(holder, self.record):
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> WorkdirLock:
        return self if self.held else self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # ---- pieces ----

    def _payload(self) -> str:
        return json.dumps(self.record, indent=2) + "\n"

    def _create(self) -> bool:
        """Creates the lock if absent; False when it exists."""
        if not _is_local(self.path):
            if self.path.exists():
                return False
            self.path.write_text(self._payload())
            return True
        tmp = self.workdir / f".{LOCK_NAME}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(self._payload())
        try:
            os.link(tmp, self.path)  # atomic, and fails if the lock exists
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink()

    def _read(self) -> dict | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(text)
            if not isinstance(holder, dict):
                raise ValueError("not a JSON object")
            return holder
        except ValueError:
            # A lock we cannot read was not written by this code's atomic create (an object
            # store's partial write, a hand edit): treat it as held by an unknown run.
            return {"host": "?", "pid": "?", "started": "?", "unreadable": text[:200]}

    @staticmethod
    def _same(a: dict, b: dict) -> bool:
        return all(a.get(k) == b.get(k) for k in ("host", "pid", "started", "process"))

    def _stale(self, holder: dict) -> bool:
        """True only when the holder is provably gone: a process of this host that has exited."""
        if holder.get("host") != self.record["host"] or not isinstance(holder.get("pid"), int):
            return False
        running = process_identity(holder["pid"])
        return running is None or (
            holder.get("process") is not None and running != holder.get("process")
        )

    def _take_over(self, holder: dict) -> None:
        """Moves the stale lock aside under a unique name, checking it is the lock judged
        stale (a trainer that took it over meanwhile gets its lock back)."""
        logging.warning(
            "workdir %s: taking over the stale lock of pid %s (started %s), which is no "
            "longer running on this host",
            self.workdir,
            holder.get("pid"),
            holder.get("started"),
        )
        aside = self.workdir / f".{LOCK_NAME}.stale.{uuid.uuid4().hex}"
        try:
            self.path.rename(aside)
        except FileNotFoundError:
            return
        try:
            moved = json.loads(aside.read_text())
        except ValueError:
            moved = None
        if moved is not None and not self._same(moved, holder) and _is_local(self.path):
            try:  # not the stale lock: a live trainer's, put it back
                os.link(aside, self.path)
            except FileExistsError:
                pass
        aside.unlink()

    def _describe(self, holder: dict) -> str:
        if "unreadable" in holder:
            return f"workdir {self.workdir} is locked: {self.path} exists but is unreadable"
        where = "this host" if holder.get("host") == self.record["host"] else "host"
        host = "" if where == "this host" else f" {holder.get('host')}"
        return (
            f"workdir {self.workdir} is in use by another trainer: pid {holder.get('pid')} on "
            f"{where}{host}, started {holder.get('started')} (lock {self.path})"
        )

    def _hint(self, holder: dict) -> str:
        if holder.get("host") == self.record["host"] and "unreadable" not in holder:
            return (
                "wait for that run to finish or stop it, or use another --workdir; two "
                "trainers on one workdir would overwrite each other's checkpoints"
            )
        return (
            "a run on another host cannot be checked from here. If it is gone (its node "
            f"crashed), delete the lock: rm {self.path} (gs://: gsutil rm {self.path}); "
            "otherwise use another --workdir"
        )


def lock_workdir(workdir: str | os.PathLike) -> WorkdirLock:
    """The lock, taken; use as `with lock_workdir(w): ...`."""
    return WorkdirLock(workdir).acquire()
