# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fence journal: what a quiesce run did to which VM, so a watchdog or a later run can undo it.

This module util is PRIVATE to the collection. It may change without notice.

Layout under ``state_dir`` (default /var/lib/kvmsnap, mode 0700; every file 0600)::

    runs/<run id>.json     one journal per run (atomically replaced: tmp file + rename)
    locks/<vm uuid>.lock   one lock per VM (created with O_EXCL; see _lock.py)
    watchdog.zip           the watchdog, runnable (see _watchdog.py)

A journal (format version 1)::

    {"version": 1, "run_id": "...", "module": "vm_quiesce", "host": "kvm1", "uri": "qemu:///system",
     "mode": "suspend", "state": "quiescing|quiesced|releasing|released|recovered",
     "started": 1764151200.5, "deadline": 1764151500.5,
     "owners": [{"pid": 1234, "start": 98765, "role": "module"}, {"pid": 1240, "start": 98770, "role": "watchdog"}],
     "release_on_owner_exit": false,
     "vms": [{"uuid": "...", "name": "vm1", "action": "suspended|frozen|none", "prior_state": "running",
              "consistency": "suspended", "released": false, "release_error": null}],
     "released_by": null, "released_at": null}

``action`` is what THIS run did and therefore what a release must undo; ``none`` means the run did
not touch the VM (user-paused VM, shut-off VM, mode none, failure before the quiesce).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import stat
import time
import uuid as _uuid
from typing import Any, Dict, List, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils._atomic_file import write_file_atomic
from ansible_collections.kvmsnap.core.plugins.module_utils._defaults import DEFAULT_STATE_DIR
from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError

FORMAT_VERSION = 1
# "auto": written ahead for mode auto (freeze or suspend not decided yet): a release thaws AND resumes
ACTIONS = ("suspended", "frozen", "auto", "none")
RUN_STATES = ("quiescing", "quiesced", "releasing", "released", "recovered")
FINAL_STATES = ("released", "recovered")
# released/recovered journals older than this are removed by the next run
KEEP_FINISHED_SECONDS = 7 * 24 * 3600
# a run past its deadline by more than this is stale even if an owner process still lives
DEADLINE_GRACE = 5.0
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class JournalError(KvmsnapError):
    """A state_dir or journal problem; the message names the path and what to do next."""


def new_run_id(prefix: str = "run") -> str:
    """A run id safe for file names and snapshot comments: <prefix>-<UTC time>-<random>."""
    return "%s-%s-%s" % (prefix, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), _uuid.uuid4().hex[:8])


def fence_id(run_id: str, vm_uuids: List[str]) -> str:
    """The journal name of one host's fence of run RUN_ID: the run id plus a digest of its VM set.

    Several inventory hosts of one run may share a state_dir (hosts on one machine, the lab): each fence keeps
    its own journal; locks and releases stay keyed by the run id (``run_of``).
    """
    import hashlib
    digest = hashlib.sha1(",".join(sorted(u.lower() for u in vm_uuids)).encode("ascii")).hexdigest()[:8]
    return "%s.%s" % (run_id[:119], digest)


def run_of(journal: Dict[str, Any]) -> Any:
    """The run id a journal belongs to (its locks' owner): ``run``, or its own id for journals of one-off runs."""
    return journal.get("run") or journal.get("run_id")


def valid_run_id(run_id: Any) -> bool:
    return isinstance(run_id, str) and bool(_RUN_ID_RE.match(run_id))


def process_start(pid: int) -> Optional[int]:
    """The start time of process PID in clock ticks since boot (from /proc), or None if it is gone."""
    try:
        with open("/proc/%d/stat" % int(pid), "rb") as fh:
            data = fh.read().decode("ascii", "replace")
    except (OSError, ValueError):
        return None
    # the command name (field 2) may hold spaces and ')'; fields after the last ')' are fixed
    rest = data.rsplit(")", 1)[-1].split()
    try:
        state = rest[0]
        start = int(rest[19])
    except (IndexError, ValueError):
        return None
    if state == "Z":  # a zombie is dead for our purposes
        return None
    return start


def owner(pid: Optional[int] = None, role: str = "module") -> Dict[str, Any]:
    pid = os.getpid() if pid is None else int(pid)
    return {"pid": pid, "start": process_start(pid), "role": role}


def owner_alive(entry: Dict[str, Any]) -> bool:
    """True if the process of an owner entry still runs (same pid AND same start time: no pid reuse)."""
    raw = entry.get("pid")
    try:
        pid = int(raw) if raw is not None else 0
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    start = process_start(pid)
    if start is None:
        return False
    recorded = entry.get("start")
    return recorded is None or int(recorded) == start


def ensure_state_dir(path: str) -> str:
    """Create STATE_DIR (0700) with runs/ and locks/; refuse a symlink or a dir others may write to."""
    if not path or not os.path.isabs(path):
        raise JournalError("state_dir: %r must be an absolute path (default %s)." % (path, DEFAULT_STATE_DIR))
    for sub in ("", "runs", "locks"):
        full = os.path.join(path, sub) if sub else path
        try:
            os.mkdir(full, 0o700)
        except FileExistsError:
            pass
        except OSError as err:
            raise JournalError("state_dir: cannot create %s: %s; create it (mode 0700, owned by the user "
                               "running the module) or choose another state_dir." % (full, err.strerror)) from None
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise JournalError("state_dir: %s is a symlink or not a directory; refusing to keep fence journals "
                               "and locks there. Remove it or choose another state_dir." % full)
        if st.st_uid != os.geteuid():
            raise JournalError("state_dir: %s is owned by uid %d, not by the user running the module (uid %d); "
                               "fix the ownership or choose another state_dir." % (full, st.st_uid, os.geteuid()))
        if st.st_mode & 0o077:
            os.chmod(full, 0o700)
    return path


def runs_dir(state_dir: str) -> str:
    return os.path.join(state_dir, "runs")


def journal_path(state_dir: str, run_id: str) -> str:
    if not valid_run_id(run_id):
        raise JournalError("invalid run id %r" % (run_id,))
    return os.path.join(runs_dir(state_dir), run_id + ".json")


def new_journal(run_id: str, module: str, uri: str, mode: str, deadline_s: float,
                vms: List[Dict[str, Any]], release_on_owner_exit: bool = False,
                now: Optional[float] = None, agent_timeout: int = 10) -> Dict[str, Any]:
    """A journal for a run that is about to quiesce VMS ([{uuid, name, prior_state}])."""
    now = time.time() if now is None else now
    return {
        "version": FORMAT_VERSION,
        "run_id": run_id,
        "module": module,
        "host": socket.gethostname(),
        "uri": uri,
        "mode": mode,
        "state": "quiescing",
        "started": now,
        "deadline": now + float(deadline_s),
        "owners": [owner()],
        "release_on_owner_exit": bool(release_on_owner_exit),
        "agent_timeout": int(agent_timeout),
        "vms": [{"uuid": vm["uuid"], "name": vm.get("name"), "action": "none",
                 "prior_state": vm.get("prior_state"), "consistency": None, "released": False,
                 "release_error": None} for vm in vms],
        "released_by": None,
        "released_at": None,
    }


def validate(journal: Any) -> Dict[str, Any]:
    """Check the journal format; raise JournalError naming the first problem."""
    if not isinstance(journal, dict):
        raise JournalError("journal is not a JSON object")
    if journal.get("version") != FORMAT_VERSION:
        raise JournalError("journal format version %r is not supported (expected %d)"
                           % (journal.get("version"), FORMAT_VERSION))
    if not valid_run_id(journal.get("run_id")):
        raise JournalError("journal run_id %r is invalid" % (journal.get("run_id"),))
    if journal.get("state") not in RUN_STATES:
        raise JournalError("journal state %r is not one of %s" % (journal.get("state"), ", ".join(RUN_STATES)))
    for key in ("started", "deadline"):
        if not isinstance(journal.get(key), (int, float)) or isinstance(journal.get(key), bool):
            raise JournalError("journal %s must be a number (epoch seconds)" % key)
    vms = journal.get("vms")
    if not isinstance(vms, list):
        raise JournalError("journal vms must be a list")
    for idx, vm in enumerate(vms):
        if not isinstance(vm, dict) or not isinstance(vm.get("uuid"), str):
            raise JournalError("journal vms[%d] must be an object with a uuid" % idx)
        if vm.get("action") not in ACTIONS:
            raise JournalError("journal vms[%d].action %r is not one of %s" % (idx, vm.get("action"), ", ".join(ACTIONS)))
    if not isinstance(journal.get("owners", []), list):
        raise JournalError("journal owners must be a list")
    return journal


def write(state_dir: str, journal: Dict[str, Any]) -> str:
    validate(journal)
    path = journal_path(state_dir, journal["run_id"])
    write_file_atomic(path, (json.dumps(journal, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return path


def read_path(path: str) -> Dict[str, Any]:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        data = fh.read()
    try:
        journal = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise JournalError("journal %s is not valid JSON: %s" % (path, err)) from None
    try:
        return validate(journal)
    except JournalError as err:
        raise JournalError("journal %s: %s" % (path, err)) from None


class _JournalLock:
    """flock on runs/.journal.lock: serialises read-modify-write of journals (module and watchdog)."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(runs_dir(state_dir), ".journal.lock")
        self.fd = -1

    def __enter__(self) -> _JournalLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def update(state_dir: str, run_id: str, fn: Any) -> Dict[str, Any]:
    """Read the journal of RUN_ID, apply fn(journal) (in place), write it back; all under the journal lock."""
    with _JournalLock(state_dir):
        journal = read(state_dir, run_id)
        fn(journal)
        write(state_dir, journal)
        return journal


def read(state_dir: str, run_id: str) -> Dict[str, Any]:
    return read_path(journal_path(state_dir, run_id))


def list_journals(state_dir: str) -> List[Dict[str, Any]]:
    """Every readable journal in state_dir (unreadable ones are returned as {"path", "error"})."""
    out: List[Dict[str, Any]] = []
    base = runs_dir(state_dir)
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return out
    for name in names:
        if not name.endswith(".json"):
            continue
        path = os.path.join(base, name)
        try:
            out.append(read_path(path))
        except (OSError, JournalError) as err:
            out.append({"path": path, "error": str(err)})
    return out


def is_final(journal: Dict[str, Any]) -> bool:
    return journal.get("state") in FINAL_STATES


def staleness(journal: Dict[str, Any], now: Optional[float] = None) -> Optional[str]:
    """Why an unfinished run is stale (a later run must recover it), or None if it is still live.

    Stale when: past its deadline (+ grace), or no owner process (module, watchdog) is alive.
    """
    if is_final(journal):
        return None
    now = time.time() if now is None else now
    if now > float(journal.get("deadline", 0)) + DEADLINE_GRACE:
        return "past its deadline (%s)" % time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(journal.get("deadline", 0)))
    owners = journal.get("owners") or []
    if not any(owner_alive(o) for o in owners):
        return "its processes (%s) are gone" % ", ".join("%s pid %s" % (o.get("role"), o.get("pid")) for o in owners)
    return None


def pending_vms(journal: Dict[str, Any]) -> List[Dict[str, Any]]:
    """VMs this run quiesced and has not released yet."""
    return [vm for vm in journal.get("vms", []) if vm.get("action") != "none" and not vm.get("released")]


def mark_final(journal: Dict[str, Any], state: str, by: str, now: Optional[float] = None) -> Dict[str, Any]:
    if state not in FINAL_STATES:
        raise JournalError("mark_final: %r is not a final state" % state)
    journal["state"] = state
    journal["released_by"] = by
    journal["released_at"] = time.time() if now is None else now
    return journal


def overlay_pending(ovl: Dict[str, Any]) -> bool:
    """An overlay of the overlay fence (``_overlay_journal``) that is not committed and deleted yet."""
    state = ovl.get("state")
    return state not in ("committed", "absent") or (state == "committed" and not ovl.get("removed"))


def holds_overlays(journal: Dict[str, Any]) -> bool:
    """The journal records an overlay still pending: it is kept until the recovery commits it."""
    return any(overlay_pending(o) for vm in journal.get("vms", []) for o in vm.get("overlays") or [])


def run_owns_overlays(journal: Dict[str, Any], now: Optional[float] = None) -> bool:
    """The run of JOURNAL still commits its own overlays: nobody else may (the watchdog, a recovery, a lock taker).

    True while a module process of the run lives (vm_backup; a vm_quiesce state=released adds itself while it
    commits), and for a run of separate tasks (vm_quiesce: no process between its quiesce and its release) until
    its journal is final or its deadline passed: the controller's snapshot comes between those tasks and must find
    the base images as the overlay left them.
    """
    if any(owner_alive(o) for o in journal.get("owners") or [] if o.get("role") == "module"):
        return True
    now = time.time() if now is None else now
    return journal.get("module") == "vm_quiesce" and not is_final(journal) \
        and now < float(journal.get("deadline") or 0)


def prune_finished(state_dir: str, now: Optional[float] = None, keep_s: float = KEEP_FINISHED_SECONDS) -> List[str]:
    """Delete released/recovered journals older than keep_s (none holding a pending overlay); the removed run ids."""
    now = time.time() if now is None else now
    removed = []
    for journal in list_journals(state_dir):
        if "error" in journal or not is_final(journal) or holds_overlays(journal):
            continue
        if now - float(journal.get("released_at") or journal.get("started") or now) > keep_s:
            try:
                os.unlink(journal_path(state_dir, journal["run_id"]))
                removed.append(journal["run_id"])
            except OSError:
                pass
    return removed
