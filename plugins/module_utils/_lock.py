# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-VM run locks under <state_dir>/locks: one run at a time per VM (F18, docs/dev/faults.md#f18), stale locks
taken over.

This module util is PRIVATE to the collection. It may change without notice.

A lock is the file ``locks/<vm uuid>.lock`` created with O_CREAT|O_EXCL (mode 0600) holding JSON::

    {"version": 1, "run_id": "...", "pid": 1234, "start": 98765, "started": 1764151200.5,
     "deadline": 1764151500.5, "host": "kvm1", "vm": "vm1", "uuid": "..."}

A lock is stale when its run's journal says the run is finished or stale (dead owners, past the
deadline), or, without a journal, when its pid is gone (pid + process start time, so a reused pid
does not count) or it is past its deadline. A stale lock is reported and taken over.

A *held* lock (``"hold": true``, taken by ``vm_quiesce state=locked`` before a backup writes anything)
outlives the module process that took it: until its run starts a quiesce journal it is stale only past
its ``deadline`` (the expiry the run chose), so an abandoned one goes away by itself. A later quiesce
or vm_backup with the same run id reuses it; the run's release (or an explicit unlock) removes it.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal
from ansible_collections.kvmsnap.core.plugins.module_utils._atomic_file import write_file_atomic
from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError

LOCK_VERSION = 1


class LockBusy(KvmsnapError):
    """Another live run holds a lock; ``holder`` is its lock record."""

    def __init__(self, message: str, holder: Dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder


def lock_path(state_dir: str, vm_uuid: str) -> str:
    if not isinstance(vm_uuid, str) or not vm_uuid or "/" in vm_uuid or vm_uuid.startswith("."):
        raise ValueError("invalid VM UUID for a lock: %r" % (vm_uuid,))
    return os.path.join(state_dir, "locks", vm_uuid.lower() + ".lock")


def read_lock(path: str) -> Optional[Dict[str, Any]]:
    """The lock record at PATH, {} if unreadable/corrupt, None if there is no lock."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as fh:
        data = fh.read()
    try:
        rec = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return {}
    return rec if isinstance(rec, dict) else {}


def describe(rec: Dict[str, Any]) -> str:
    started = rec.get("started")
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)) if isinstance(started, (int, float)) else "?"
    return "run %s (pid %s on %s, started %s)" % (rec.get("run_id", "?"), rec.get("pid", "?"), rec.get("host", "?"), when)


def lock_staleness(rec: Dict[str, Any], journal: Optional[Dict[str, Any]], now: Optional[float] = None) -> Optional[str]:
    """Why a lock record is stale, or None if its holder is live. JOURNAL is its run's journal (or None)."""
    now = time.time() if now is None else now
    if not rec:
        return "the lock file is empty or corrupt"
    if journal is not None and "error" not in journal:
        if _journal.is_final(journal):
            if _journal.holds_overlays(journal) and _journal.run_owns_overlays(journal, now):
                return None  # released, but its VMs still run on overlays it is committing
            return "its run is %s" % journal.get("state")
        return _journal.staleness(journal, now)
    deadline = rec.get("deadline")
    if isinstance(deadline, (int, float)) and now > deadline + _journal.DEADLINE_GRACE:
        return "past its deadline"
    if rec.get("hold"):
        return None  # held for a run between its tasks: no process owns it, only the expiry counts
    if not _journal.owner_alive({"pid": rec.get("pid"), "start": rec.get("start")}):
        return "its process (pid %s) is gone" % rec.get("pid")
    return None


def journal_of(state_dir: str, rec: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The journal of the run that holds lock record REC (None: none; {"error"}: unreadable)."""
    run_id = rec.get("journal") or rec.get("run_id")
    if not isinstance(run_id, str) or not _journal.valid_run_id(run_id):
        return None
    try:
        return _journal.read(state_dir, run_id)
    except FileNotFoundError:
        return None
    except (OSError, _journal.JournalError) as err:
        return {"error": str(err)}


def _create(path: str, rec: Dict[str, Any]) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as err:
        if err.errno == errno.EEXIST:
            return False
        raise
    with os.fdopen(fd, "wb") as fh:
        fh.write((json.dumps(rec, sort_keys=True) + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
    return True


def acquire(state_dir: str, vms: List[Dict[str, Any]], run_id: str, deadline: float,
            now: Optional[float] = None, hold: bool = False,
            journal: Optional[str] = None) -> Tuple[List[str], List[Dict[str, Any]]]:
    """Lock every VM ({uuid, name}) for RUN_ID; all or nothing.

    Returns (locked uuids, stale locks taken over [{uuid, vm, holder, reason}]). Raises LockBusy
    naming the holder (run id, pid, start time) if a live run holds one of them; then the locks
    this call took are released again. HOLD: a held lock (see the module docstring).
    """
    taken: List[str] = []
    takeovers: List[Dict[str, Any]] = []
    base = {"version": LOCK_VERSION, "run_id": run_id, "pid": os.getpid(),
            "start": _journal.process_start(os.getpid()), "started": time.time() if now is None else now,
            "deadline": deadline, "host": socket.gethostname()}
    if hold:
        base["hold"] = True
    if journal is not None and journal != run_id:
        base["journal"] = journal  # the fence's journal (one per host of a run, see _journal.fence_id)
    try:
        for vm in sorted(vms, key=lambda v: v["uuid"]):
            path = lock_path(state_dir, vm["uuid"])
            rec = dict(base, vm=vm.get("name"), uuid=vm["uuid"])
            for _attempt in range(3):
                if _create(path, rec):
                    taken.append(vm["uuid"])
                    break
                holder = read_lock(path)
                if holder is None:  # vanished between our create and read: try again
                    continue
                if holder.get("run_id") == run_id:  # our own lock (a re-acquire): keep it
                    # renewed: a second lock step (new expiry), or the fence taking over its held lock
                    # (this process and its journal judge it from now on)
                    _replace(path, rec)
                    taken.append(vm["uuid"])
                    break
                reason = lock_staleness(holder, journal_of(state_dir, holder), now)
                if reason is None:
                    raise LockBusy("VM %s (%s) is locked by %s until %s; another kvmsnap run is fencing it. Wait "
                                   "for it to finish, or remove %s if you are sure that run is gone."
                                   % (vm.get("name"), vm["uuid"], describe(holder),
                                      time.strftime("%H:%M:%SZ", time.gmtime(holder.get("deadline") or 0)), path),
                                   holder)
                # stale: move it aside atomically (only one taker wins the rename), then create ours
                aside = "%s.stale-%s" % (path, run_id)
                try:
                    os.rename(path, aside)
                except FileNotFoundError:
                    continue
                try:
                    os.unlink(aside)
                except OSError:
                    pass
                takeovers.append({"uuid": vm["uuid"], "vm": vm.get("name"), "holder": holder, "reason": reason})
            else:
                raise LockBusy("VM %s (%s): could not take the lock %s (it keeps changing); retry the run."
                               % (vm.get("name"), vm["uuid"], path), read_lock(path) or {})
    except BaseException:
        release(state_dir, taken, run_id)
        raise
    return taken, takeovers


def _replace(path: str, rec: Dict[str, Any]) -> None:
    write_file_atomic(path, (json.dumps(rec, sort_keys=True) + "\n").encode("utf-8"))


def release_run(state_dir: str, run_id: str) -> List[str]:
    """Remove every lock RUN_ID holds (the run's unlock); never another run's lock."""
    return release(state_dir, [rec["uuid"] for rec in holders(state_dir)
                               if rec.get("run_id") == run_id and isinstance(rec.get("uuid"), str)], run_id)


def release(state_dir: str, uuids: List[str], run_id: str) -> List[str]:
    """Remove the locks of UUIDS that RUN_ID holds (never another run's lock). Returns the removed ones."""
    removed = []
    for vm_uuid in uuids:
        path = lock_path(state_dir, vm_uuid)
        rec = read_lock(path)
        if rec is None:
            continue
        if rec.get("run_id") != run_id:
            continue
        try:
            os.unlink(path)
            removed.append(vm_uuid)
        except FileNotFoundError:
            pass
    return removed


def holders(state_dir: str) -> List[Dict[str, Any]]:
    """Every lock record in state_dir (for reports and recovery)."""
    out: List[Dict[str, Any]] = []
    base = os.path.join(state_dir, "locks")
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return out
    for name in names:
        if name.endswith(".lock"):
            rec = read_lock(os.path.join(base, name))
            if rec is not None:
                out.append(dict(rec, path=os.path.join(base, name)))
    return out
