# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fence: quiesce a set of VMs in parallel, journal it, release exactly what was quiesced.

This module util is PRIVATE to the collection. It may change without notice.

Used by vm_quiesce (state quiesced/released: ``_fence_quiesce``) and vm_backup (quiesce → snapshot → release:
``_backup_run``). This file holds the Fence class (one host's run: journal, locks, watchdog, parallel quiesce and
release), the signal handling and the checks both entry points share; the pieces it is built from are
``_fence_rules`` (pure rules), ``_fence_conn`` (shared libvirt connection, agent calls, VM resolution),
``_fence_vm`` (quiesce/release of one VM), ``_fence_gang`` (the thread group), ``_fence_errors``, ``_journal``,
``_lock`` and ``_watchdog``.

Rules (see docs and tests):

* every VM is resolved (name or UUID) before any VM is touched; unknown VMs fail the run, all named;
* a stale journal of a dead run (or one past its deadline) is recovered first and reported;
* a lock per VM keeps two runs apart (F18 (docs/dev/faults.md#f18)); a stale lock is reported and taken over;
* the journal is written ahead of the quiesce (what will be done), then updated with what was done;
* a detached watchdog (``_watchdog``) releases at the deadline by itself;
* a VM that was paused (or frozen) before the run is never touched (F8 (docs/dev/faults.md#f8)); release of a VM that is
  already running / thawed is a success (F9 (docs/dev/faults.md#f9)); on a failure partway the VMs already quiesced are
  released and the others are left alone (F10 (docs/dev/faults.md#f10));
* consistency levels are never claimed above what was reached.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal, _libvirt, _lock, _watchdog
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_conn import SharedConnection
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_errors import FenceError, state_dir_error
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_gang import Gang, parallel
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_rules import consistency_for, elapsed_ms, is_test_uri, planned_action, skip_reason, wall_time
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_vm import quiesce_one, release_one

# connections of one run to libvirtd (libvirtd serves max_client_requests=5 calls per client at a time)
MAX_SLOTS = 8


class Fence:
    """One host's fence state: state_dir, connection, journal, locks, watchdog."""

    def __init__(self, uri: Optional[str], state_dir: str, retries: int = 3, agent_timeout: int = 10,
                 module: str = "vm_quiesce", check_mode: bool = False, watchdog: Optional[bool] = None) -> None:
        self.uri = uri or _libvirt.DEFAULT_URI
        self.state_dir = state_dir
        self.retries = retries
        self.agent_timeout = agent_timeout
        self.module = module
        self.check_mode = check_mode
        # the test driver is per process: a watchdog process would see other domains
        self.use_watchdog = (not is_test_uri(self.uri)) if watchdog is None else watchdog
        self.sc = SharedConnection(self.uri, retries=retries, readonly=check_mode)
        self.run_id: Optional[str] = None
        self.journal_id: Optional[str] = None
        self.journal: Optional[Dict[str, Any]] = None
        self.locked: List[str] = []
        self.warnings: List[str] = []

    @property
    def where(self) -> str:
        """Host and URI, for messages: 'kvm1 (qemu:///system)'."""
        return "%s (%s)" % (socket.gethostname(), self.uri)

    # -- state dir, recovery --------------------------------------------------------------

    def prepare_state_dir(self) -> None:
        if self.check_mode and not os.path.isdir(self.state_dir):
            return
        if self.check_mode:
            return
        _journal.ensure_state_dir(self.state_dir)

    def recover(self, skip: Optional[str] = None) -> List[Dict[str, Any]]:
        """Release VMs of stale runs (dead or past their deadline); report each run. SKIP: a run id left alone
        (the caller's own run, which its release call handles itself)."""
        if not os.path.isdir(os.path.join(self.state_dir, "runs")):
            return []
        report = []
        for journal in _journal.list_journals(self.state_dir):
            if "error" in journal:
                self.warnings.append("unreadable fence journal %s: %s; remove it after checking its VMs."
                                     % (journal["path"], journal["error"]))
                continue
            if _journal.is_final(journal) or journal.get("uri") not in (None, self.uri):
                continue
            if skip is not None and _journal.run_of(journal) == skip:
                continue
            reason = _journal.staleness(journal)
            if reason is None:
                continue
            entry = {"run_id": _journal.run_of(journal), "module": journal.get("module"), "reason": reason,
                     "started": journal.get("started"), "vms": []}
            pending = _journal.pending_vms(journal)
            if self.check_mode:
                entry["vms"] = [{"uuid": v["uuid"], "name": v.get("name"), "action": v["action"],
                                 "result": "would release"} for v in pending]
                report.append(entry)
                continue
            results = parallel(pending, lambda v: release_one(self.sc, v, self.agent_timeout))
            for vm, res in zip(pending, results):
                entry["vms"].append({"uuid": vm["uuid"], "name": vm.get("name"), "action": vm["action"],
                                     "result": res.get("result"), "error": res.get("error")})
            errors = {v["uuid"]: r.get("error") for v, r in zip(pending, results) if r.get("error")}

            def finish(j: Dict[str, Any], errors: Dict[str, Any] = errors, reason: str = reason) -> None:
                for vm in j.get("vms", []):
                    if vm.get("action") != "none" and not vm.get("released"):
                        vm["released"] = vm["uuid"] not in errors
                        vm["release_error"] = errors.get(vm["uuid"])
                        if vm["released"]:  # who and when: the run's own report derives its consistency from it
                            vm["released_how"] = "recovery"
                            vm["released_by"] = "recovery by run %s (%s)" % (self.run_id or "-", reason)
                            vm["released_at"] = time.time()
                _journal.mark_final(j, "recovered", "run %s (%s)" % (self.run_id or "recovery", reason))

            try:
                _journal.update(self.state_dir, journal["run_id"], finish)
            except (OSError, _journal.JournalError) as err:
                self.warnings.append("could not update journal of run %s: %s" % (journal["run_id"], err))
            _lock.release(self.state_dir, [v["uuid"] for v in journal.get("vms", [])], _journal.run_of(journal))
            report.append(entry)
            if errors:
                self.warnings.append("recovery of run %s could not release: %s" % (journal["run_id"],
                                                                                   "; ".join(str(e) for e in errors.values())))
        _journal.prune_finished(self.state_dir)
        return report

    # -- quiesce ----------------------------------------------------------------------------

    def start_run(self, vms: List[Dict[str, Any]], mode: str, deadline_s: float,
                  release_on_owner_exit: bool, run_id: Optional[str] = None) -> Dict[str, Any]:
        """Lock, write the journal ahead, start the watchdog. Returns {run_id, takeovers, watchdog}."""
        self.run_id = run_id or _journal.new_run_id(self.module.replace("vm_", ""))
        # a given run id may fence several hosts sharing this state_dir: one journal per fence
        self.journal_id = _journal.fence_id(self.run_id, [vm["uuid"] for vm in vms]) if run_id else self.run_id
        now = time.time()
        try:
            taken, takeovers = _lock.acquire(self.state_dir, vms, self.run_id, now + deadline_s, now,
                                             journal=self.journal_id)
        except OSError as err:
            raise state_dir_error(self.state_dir, os.path.join(self.state_dir, "locks"), err) from None
        self.locked = taken
        journal = _journal.new_journal(self.journal_id, self.module, self.uri, mode, deadline_s, vms,
                                       release_on_owner_exit=release_on_owner_exit, now=now,
                                       agent_timeout=self.agent_timeout)
        journal["run"] = self.run_id
        for entry, vm in zip(journal["vms"], vms):
            entry["action"] = planned_action(mode, vm["state"])
        self.journal = journal
        try:
            path = _journal.write(self.state_dir, journal)
        except OSError as err:  # full or read-only state_dir: say where, undo the locks, touch nothing
            _lock.release(self.state_dir, self.locked, self.run_id)
            self.locked = []
            raise state_dir_error(self.state_dir, _journal.journal_path(self.state_dir, self.journal_id), err) from None
        wd = None
        if self.use_watchdog:
            try:
                wd = _watchdog.spawn(self.state_dir, path)
            except OSError as err:
                self._abort_run()
                raise FenceError("cannot start the fence watchdog on this host (%s); nothing was quiesced. "
                                 "Check that %s is writable." % (err, self.state_dir)) from None

            def add_owner(j: Dict[str, Any]) -> None:
                j["owners"].append(wd)
            self.journal = _journal.update(self.state_dir, self.journal_id, add_owner)
        else:
            self.warnings.append("no watchdog for %s: the libvirt test driver lives inside this process only"
                                 % self.uri)
        return {"run_id": self.run_id, "takeovers": takeovers, "watchdog": wd}

    def _abort_run(self) -> None:
        if self.run_id is None or self.journal_id is None:
            return
        try:
            _journal.update(self.state_dir, self.journal_id,
                            lambda j: _journal.mark_final(j, "released", "run %s (aborted)" % self.run_id))
        except (OSError, _journal.JournalError):
            pass
        _lock.release(self.state_dir, self.locked, self.run_id)
        self.locked = []

    def quiesce(self, vms: List[Dict[str, Any]], mode: str, allow_crash: bool = False,
                record: bool = True) -> List[Dict[str, Any]]:
        """Quiesce VMS in parallel; returns one outcome per VM (same order).

        RECORD: write the outcome to the journal now (vm_quiesce). vm_backup records after the release so
        no file write lands in the pause window; its write-ahead journal already names every VM to release.
        """
        todo = [vm for vm in vms if planned_action(mode, vm["state"]) != "none"]
        self.sc.set_slots(min(MAX_SLOTS, max(1, len(todo))))
        gang = Gang(todo, lambda vm: quiesce_one(self.sc, vm, mode, self.agent_timeout), self.sc, self._lookup)
        t0 = time.monotonic()
        gang.fire()
        results = gang.wait(timeout=max(30.0, 3.0 * self.agent_timeout + 10.0))
        by_uuid = {vm["uuid"]: res for vm, res in zip(todo, results)}
        outcomes = []
        for vm in vms:
            res = by_uuid.get(vm["uuid"])
            if res is None:
                outcomes.append({"uuid": vm["uuid"], "name": vm["name"], "prior_state": vm["state"], "action": "none",
                                 "consistency": consistency_for("none", vm["state"]),
                                 "detail": skip_reason(mode, vm["state"], vm.get("paused_reason")),
                                 "error": None, "t_quiesced": t0, "quiesce_ms": 0.0})
                continue
            action = res.get("action") or ("frozen" if mode == "freeze" else "auto" if mode == "auto" else "suspended")
            if res.get("hung"):
                action = planned_action(mode, "running")  # it may still land: release must undo it
            outcome = {"uuid": vm["uuid"], "name": vm["name"], "prior_state": vm["state"], "action": action,
                       "consistency": res.get("consistency") or "crash", "detail": res.get("detail"),
                       "error": res.get("error"), "t_quiesced": res["t_done"], "quiesce_ms": elapsed_ms(t0, res["t_done"]),
                       "frozen_filesystems": res.get("frozen_filesystems")}
            if outcome["error"] and allow_crash:
                outcome["detail"] = "%s; continuing crash-consistent (allow_crash_consistent)" % outcome["error"]
                outcome["error"] = None
                outcome["consistency"] = "crash"
            outcomes.append(outcome)
        if record:
            self._record(outcomes, "quiesced")
        return outcomes

    def _lookup(self, vm: Dict[str, Any]) -> None:
        self.sc.call(lambda conn, _a: self.sc.domain(conn, vm["uuid"]))

    def _record(self, outcomes: List[Dict[str, Any]], state: str) -> None:
        if self.run_id is None or self.journal_id is None:
            return
        actions = {o["uuid"]: o for o in outcomes}

        def apply(j: Dict[str, Any]) -> None:
            for vm in j["vms"]:
                o = actions.get(vm["uuid"])
                if o is not None:
                    vm["action"] = o["action"]
                    vm["consistency"] = o["consistency"]
                    if o.get("t_quiesced") is not None and o["action"] != "none":
                        # lets a later vm_quiesce state=released report the pause window measured on the host
                        vm["quiesced_at"] = wall_time(o["t_quiesced"])
                    if "released" in o:
                        vm["released"] = o["released"]
                        vm["release_error"] = o.get("release_error")
                        for key in ("released_at", "released_how", "released_by", "release_result"):
                            if o.get(key) is not None:
                                vm[key] = o[key]
            if j["state"] not in _journal.FINAL_STATES:
                j["state"] = state
        self.journal = _journal.update(self.state_dir, self.journal_id, apply)

    # -- release ------------------------------------------------------------------------------

    def prepare_release(self, outcomes: List[Dict[str, Any]]) -> Gang:
        """Start (but do not fire) the release workers of OUTCOMES: threads up, domains looked up."""
        todo = [o for o in outcomes if o["action"] != "none" and not o.get("released")]
        self.sc.set_slots(min(MAX_SLOTS, max(1, len(todo))))
        return Gang(todo, lambda o: release_one(self.sc, o, self.agent_timeout), self.sc, self._lookup)

    def release(self, outcomes: List[Dict[str, Any]], gang: Optional[Gang] = None) -> List[Dict[str, Any]]:
        """Release every VM of OUTCOMES this run quiesced, in parallel; sets released/release_* in place."""
        gang = gang or self.prepare_release(outcomes)
        todo = gang.items
        # first quiesced, first released: the longest pause is then ~ max(quiesce spread, release spread) +
        # snapshot instead of their sum
        gang.fire(order=sorted(range(len(todo)), key=lambda i: todo[i].get("t_quiesced") or 0.0))
        results = gang.wait(timeout=max(30.0, 3.0 * self.agent_timeout + 10.0))
        for o, res in zip(todo, results):
            o["released"] = not res.get("error")
            o["release_result"] = res.get("result")
            o["release_error"] = res.get("error")
            o["t_released"] = res["t_done"]
            if o["released"]:
                o["released_at"] = wall_time(res["t_done"])
                o["released_how"] = "release"
                o["released_by"] = "release of run %s" % (self.run_id or "-")
        for o in outcomes:
            if o["action"] == "none":
                o.setdefault("release_result", "untouched")
                o.setdefault("released", True)
        return outcomes

    def finish(self, outcomes: List[Dict[str, Any]], by: str = "module", keep_locked: Sequence[str] = ()) -> None:
        """Journal final (released) when every VM is released; then the locks go, but those of KEEP_LOCKED (VMs
        on overlays this run still has to commit: ``unlock`` once they are committed)."""
        if self.run_id is None or self.journal_id is None:
            return
        for o in outcomes:
            if o.get("action") == "none":
                o.setdefault("released", True)
        self._record(outcomes, "releasing")
        if all(o.get("released") for o in outcomes):
            try:
                self.journal = _journal.update(self.state_dir, self.journal_id,
                                               lambda j: _journal.mark_final(j, "released", by))
            except (OSError, _journal.JournalError) as err:
                self.warnings.append("could not finish journal of run %s: %s" % (self.run_id, err))
            kept = set(keep_locked)
            _lock.release(self.state_dir, [u for u in self.locked if u not in kept], self.run_id)
            self.locked = [u for u in self.locked if u in kept]
        else:
            self.warnings.append("run %s: not every VM could be released; its journal stays open so the "
                                 "watchdog and the next run retry" % self.run_id)

    def unlock(self) -> None:
        """The locks this run still holds go (after the commit of its overlays)."""
        if self.run_id is not None and self.locked:
            _lock.release(self.state_dir, self.locked, self.run_id)
        self.locked = []

    def record(self, outcomes: List[Dict[str, Any]], state: str) -> None:
        """Record OUTCOMES of VMs fenced outside ``quiesce`` (the overlay fence) in the run's journal."""
        self._record(outcomes, state)

    def emergency_release(self) -> None:
        """Release from the write-ahead journal (interrupted mid-quiesce): every planned VM."""
        if self.journal is None:
            return
        pending = [dict(vm) for vm in _journal.pending_vms(self.journal)]
        self.release(pending)
        self.finish(pending, by="run %s (interrupted)" % self.run_id)

    def close(self) -> None:
        self.sc.close()


# ---------------------------------------------------------------------------------------------
# signals (F5 (docs/dev/faults.md#f5)): SIGTERM/SIGINT/SIGHUP become an exception in the main thread, so `finally` releases


class FenceInterrupted(BaseException):
    """A termination signal arrived while VMs were (being) quiesced."""


class release_on_signals:
    SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")

    def __init__(self) -> None:
        self.saved: Dict[int, Any] = {}
        self.fired = False

    def _handler(self, signum: int, _frame: Any) -> None:
        if self.fired:
            return  # a second signal must not interrupt the release the first one started
        self.fired = True
        raise FenceInterrupted("interrupted by signal %d" % signum)

    def __enter__(self) -> release_on_signals:
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in self.SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                self.saved[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self.saved.items():
            signal.signal(sig, old)


def check_locks(state_dir: str, vms: List[Dict[str, Any]], run_id: Optional[str] = None) -> None:
    """Check mode: fail as the real run would if a live run holds one of the VMs (read-only)."""
    for vm in vms:
        path = _lock.lock_path(state_dir, vm["uuid"])
        rec = _lock.read_lock(path)
        if not rec or (run_id is not None and rec.get("run_id") == run_id):
            continue
        journal = _lock.journal_of(state_dir, rec)
        if _lock.lock_staleness(rec, journal) is None:
            raise FenceError("VM %s (%s) is locked by %s; another kvmsnap run is fencing it."
                             % (vm["name"], vm["uuid"], _lock.describe(rec)), {"holder": rec})


def run_id_param(params: Dict[str, Any]) -> Optional[str]:
    run_id = params.get("run_id")
    if run_id is not None and not _journal.valid_run_id(run_id):
        raise FenceError("run_id: %r is not a valid run id; allowed: 1-128 characters from [A-Za-z0-9_.:-]." % (run_id,))
    return run_id
