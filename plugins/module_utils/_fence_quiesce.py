# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vm_quiesce's entry points: state=locked, quiesced and released.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Optional, Set

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal, _lock
from ansible_collections.kvmsnap.core.plugins.module_utils._backup_overlay import OverlayFence, commit_run, overlay_record, own_overlays, recover_leftovers
from ansible_collections.kvmsnap.core.plugins.module_utils._fence import Fence, check_locks, release_on_signals, run_id_param
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_conn import resolve_lock_vms, resolve_vms
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_errors import FenceError, state_dir_error
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_rules import plan, wall_time, weakest


def run_locked(params: Dict[str, Any], check_mode: bool = False) -> Dict[str, Any]:
    """vm_quiesce state=locked: take the per-VM locks of run RUN_ID before the run writes anything (F18 (docs/dev/faults.md#f18)).

    The locks are held (no process owns them) until the run's release/unlock, or until DEADLINE seconds
    from now (the expiry of an abandoned run). A live lock of another run refuses, naming its holder.
    """
    run_id = run_id_param(params)
    if not run_id:
        raise FenceError("run_id: state=locked needs the run id the later quiesce and release use.")
    fence = Fence(params.get("uri"), params["state_dir"], params.get("retries", 3), params.get("agent_timeout", 10),
                  "vm_quiesce", check_mode)
    result: Dict[str, Any] = {"changed": False, "vms": [], "recovered": [], "run_id": run_id}
    try:
        fence.prepare_state_dir()
        vms = resolve_lock_vms(fence.sc.conn, params.get("vms") or [], fence.uri, params.get("missing") or "fail")
        result["recovered"] = fence.recover(skip=run_id)
        result["vms"] = [{"name": vm["name"], "uuid": vm["uuid"], "prior_state": vm["state"]} for vm in vms]
        if check_mode:
            check_locks(fence.state_dir, vms, run_id)
            result["changed"] = True
            result["msg"] = "check mode: would lock %d VM(s) for run %s" % (len(vms), run_id)
            return result
        now = time.time()
        expires = now + float(params["deadline"])
        try:
            _taken, takeovers = _lock.acquire(fence.state_dir, vms, run_id, expires, now, hold=True)
        except OSError as err:
            raise state_dir_error(fence.state_dir, os.path.join(fence.state_dir, "locks"), err) from None
        except _lock.LockBusy as err:
            raise FenceError("vm_quiesce on %s: %s Nothing was written or quiesced by run %s."
                             % (fence.where, err, run_id), dict(result, holder=err.holder)) from None
        result.update(changed=True, lock_takeovers=takeovers, expires=expires,
                      msg="locked %d VM(s) for run %s until %s (released by the run's release, or expired)" % (
                          len(vms), run_id, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))))
        return result
    finally:
        result["warnings"] = fence.warnings
        fence.close()


def run_quiesced(params: Dict[str, Any], check_mode: bool = False) -> Dict[str, Any]:
    """vm_quiesce state=quiesced. Raises FenceError (with .result) on failure.

    FENCE ``overlay``/``auto``: the VMs that can take the overlay fence are quiesced, switched to overlays and
    released at once (they run during the caller's snapshot; state=released commits their overlays); the others
    (``auto``) are quiesced and held as with ``direct``."""
    run_id = run_id_param(params)
    mode = params.get("mode") or "auto"
    deadline = float(params["deadline"])
    choice = params.get("fence") or "direct"
    fence = Fence(params.get("uri"), params["state_dir"], params.get("retries", 3), params.get("agent_timeout", 10),
                  "vm_quiesce", check_mode)
    if choice != "direct" and not run_id:  # the overlays' names carry the run id: it is known before the plan
        run_id = _journal.new_run_id("quiesce")
    overlays = OverlayFence(fence, run_id or "", choice, mode)
    result: Dict[str, Any] = {"changed": False, "vms": [], "recovered": [], "run_id": None}
    try:
        fence.prepare_state_dir()
        overlays.begin_preparing()
        vms = resolve_vms(fence.sc.conn, params.get("vms") or [], fence.uri)
        result["recovered"] = fence.recover(skip=run_id)
        if choice != "direct":
            result["recovered"].extend(recover_leftovers(fence, vms, run_id or "", check_mode))
        if result["recovered"]:  # recovery may have resumed some of them: take their state again
            vms = resolve_vms(fence.sc.conn, [vm["uuid"] for vm in vms], fence.uri)
        overlays.plan(vms)  # fence=overlay fails here, before anything is touched, for a VM that cannot take it
        if check_mode:
            check_locks(fence.state_dir, vms, run_id)
            result["vms"] = [overlays.report(e) for e in plan(vms, mode)]
            result["changed"] = any(v["action"] != "none" for v in result["vms"]) or bool(result["recovered"])
            result["msg"] = "check mode: would quiesce %d of %d VM(s) (mode %s, deadline %ds); nothing touched" % (
                sum(1 for v in result["vms"] if v["action"] != "none"), len(vms), mode, deadline)
            return result
        outcomes: List[Dict[str, Any]] = []
        with release_on_signals():
            try:
                run = fence.start_run(vms, mode, deadline, release_on_owner_exit=False, run_id=run_id)
            except _lock.LockBusy as err:
                raise FenceError(str(err), dict(result, holder=err.holder)) from None
            result.update(run_id=run["run_id"], lock_takeovers=run["takeovers"],
                          watchdog_pid=(run["watchdog"] or {}).get("pid"))
            try:
                overlays.run()  # overlay VMs: quiesce -> overlays -> release; they run from here on
                fence.record(overlays.fence_outcomes(), "quiescing")
                overlaid = {o["uuid"] for o in overlays.fence_outcomes()}
                outcomes = fence.quiesce([vm for vm in vms if vm["uuid"] not in overlaid], mode,
                                         bool(params.get("allow_crash_consistent")))
            except BaseException:
                fence.emergency_release()
                overlays.commit()
                raise
        failed = [o for o in outcomes if o.get("error")] + overlays.failed()
        if failed:
            fence.release(outcomes)  # F10 (docs/dev/faults.md#f10): undo the ones that were quiesced, the others were never touched
            fence.finish(outcomes + overlays.fence_outcomes(), by="run %s (quiesce failed)" % fence.run_id)
            fence.warnings.extend(overlays.commit())  # no snapshot will come: the overlays go back now
            result["vms"] = overlays.vm_report(outcomes)
            result["changed"] = True
            raise FenceError("vm_quiesce on %s: %d of %d VM(s) could not be quiesced (%s); the VMs already quiesced "
                             "were released again, nothing stays paused." % (
                                 fence.where, len(failed), len(vms), "; ".join(o["error"] for o in failed)), result)
        result["vms"] = overlays.vm_report(outcomes)
        result["changed"] = any(v["action"] != "none" for v in result["vms"])
        if not result["changed"]:
            fence.finish(outcomes, by="run %s (nothing to quiesce)" % fence.run_id)
        result["deadline"] = fence.journal["deadline"] if fence.journal else None
        result["deadline_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(result["deadline"] or 0))
        result["consistency"] = weakest([v["consistency"] for v in result["vms"]])
        held = sum(1 for o in outcomes if o["action"] != "none")
        result["msg"] = "quiesced %d VM(s) (mode %s); run %s; released by state=released or by the watchdog at %s" % (
            held, mode, fence.run_id, result["deadline_utc"])
        on_overlays = len(overlays.created_uuids())
        if on_overlays:
            result["msg"] += "; %d VM(s) run on overlays until state=released commits them" % on_overlays
        return result
    finally:
        overlays.preparing.end()
        result["warnings"] = fence.warnings
        fence.close()


def _who(vm: Dict[str, Any], journal: Dict[str, Any]) -> Dict[str, Any]:
    """How a journal VM was released: {released_by (release/watchdog/recovery), released_by_detail, released_at}."""
    how = vm.get("released_how")
    detail = vm.get("released_by") or journal.get("released_by")
    if how is None:  # journals written before per-VM records: judge by the run's record
        text = str(journal.get("released_by") or "")
        how = "watchdog" if text.startswith("watchdog") else "recovery" if "(" in text and "run " in text \
            and "quiesce failed" not in text and "interrupted" not in text else "release"
    return {"released_by": how, "released_by_detail": detail,
            "released_at": vm.get("released_at") or journal.get("released_at"), "quiesced_at": vm.get("quiesced_at")}


def _commit_overlays(fence: Fence, run_id: str, journals: List[Dict[str, Any]],
                     wanted: Optional[Dict[str, Dict[str, Any]]], covered: Dict[str, Dict[str, Any]],
                     check_mode: bool) -> List[Dict[str, Any]]:
    """After the release: commit the overlays of run RUN_ID (the controller's snapshot is taken), close its
    journals, and add each overlay VM's window and commits (also those someone else made: the watchdog at the
    deadline) to its COVERED entry. Returns the commits this call made."""
    commits: List[Dict[str, Any]] = []
    if any(_journal.holds_overlays(j) for j in journals):  # else the watchdog or a recovery committed them already
        commits = commit_run(fence, run_id, list(wanted) if wanted is not None else None, check_mode)

    def close(j: Dict[str, Any]) -> None:
        if not _journal.is_final(j) and not _journal.pending_vms(j):
            _journal.mark_final(j, "released", "vm_quiesce state=released (overlays committed)")
    for journal in [] if check_mode else journals:
        try:
            journal = _journal.update(fence.state_dir, journal["run_id"], close)
        except (OSError, _journal.JournalError) as err:
            fence.warnings.append("could not update journal of run %s: %s" % (journal["run_id"], err))
        for vm in journal.get("vms", []):
            record = overlay_record(vm)
            if record and vm["uuid"] in covered:
                covered[vm["uuid"]].update(record)
    return [{k: c.get(k) for k in ("uuid", "name", "target", "overlay", "result", "error", "attempts", "commit_ms",
                                   "removed")} for c in commits]


def run_released(params: Dict[str, Any], check_mode: bool = False) -> Dict[str, Any]:
    """vm_quiesce state=released: undo what vm_quiesce runs did (journals), never anything else.

    With RUN_ID only that run's journal is looked at (a release never touches another run's quiesce, F18 (docs/dev/faults.md#f18))
    and every VM says who released it (this call, the watchdog, another run's recovery, or nobody: not
    quiesced by that run) and when; then the run's remaining locks on this host go.
    """
    run_id = run_id_param(params)
    fence = Fence(params.get("uri"), params["state_dir"], params.get("retries", 3), params.get("agent_timeout", 10),
                  "vm_quiesce", check_mode)
    result: Dict[str, Any] = {"changed": False, "vms": [], "recovered": [], "runs": [], "unlocked": []}
    try:
        fence.prepare_state_dir()
        fence.run_id = run_id
        wanted: Optional[Dict[str, Dict[str, Any]]] = None
        if params.get("vms"):
            wanted = {vm["uuid"]: vm for vm in resolve_vms(fence.sc.conn, params["vms"], fence.uri)}
        result["recovered"] = fence.recover(skip=run_id)
        covered: Dict[str, Dict[str, Any]] = {}
        if run_id is None:  # legacy: no run scope; the recovered runs' VMs count as released here
            for run in result["recovered"]:
                for vm in run["vms"]:
                    covered[vm["uuid"]] = {"name": vm.get("name"), "uuid": vm["uuid"], "action": vm["action"],
                                           "release_result": vm.get("result"), "release_error": vm.get("error"),
                                           "run_id": run["run_id"], "released": not vm.get("error"),
                                           "released_by": "recovery", "released_at": time.time()}
        journals = []
        released_now: Set[str] = set()
        if os.path.isdir(os.path.join(fence.state_dir, "runs")):
            for j in _journal.list_journals(fence.state_dir):
                if "error" in j or j.get("uri") != fence.uri:
                    continue
                if run_id is not None:
                    if _journal.run_of(j) == run_id:
                        journals.append(j)
                elif not _journal.is_final(j) and (j.get("module") == "vm_quiesce" or _journal.staleness(j) is not None):
                    journals.append(j)
        if run_id is not None and not check_mode:
            own_overlays(fence.state_dir, journals)
        for journal in journals:
            mine = [vm for vm in journal.get("vms", []) if vm.get("action") != "none" and (wanted is None or vm["uuid"] in wanted)]
            pending = [dict(vm) for vm in mine if not vm.get("released")]
            for vm in mine:  # released before this call (by an earlier call, the watchdog or a recovery)
                if vm.get("released"):
                    covered[vm["uuid"]] = dict({"name": vm.get("name"), "uuid": vm["uuid"], "action": vm["action"],
                                                "release_result": vm.get("release_result"), "release_error": None,
                                                "run_id": _journal.run_of(journal), "released": True},
                                               **_who(vm, journal))
            if not pending:
                continue
            result["runs"].append(_journal.run_of(journal))
            if check_mode:
                for vm in pending:
                    covered[vm["uuid"]] = {"name": vm.get("name"), "uuid": vm["uuid"], "action": vm["action"],
                                           "release_result": "would release", "run_id": _journal.run_of(journal)}
                continue
            fence.release(pending)
            released_now.update(vm["uuid"] for vm in pending if vm.get("released"))
            for vm in pending:
                if vm.get("released") and vm.get("quiesced_at") and vm.get("t_released") is not None:
                    vm["pause_ms"] = round(max(wall_time(vm["t_released"]) - vm["quiesced_at"], 0.0) * 1000.0, 1)
            errors = {vm["uuid"]: vm.get("release_error") for vm in pending if vm.get("release_error")}
            done = {vm["uuid"]: vm for vm in pending if vm.get("released")}

            def apply(j: Dict[str, Any], done: Dict[str, Any] = done, errors: Dict[str, Any] = errors) -> None:
                for vm in j["vms"]:
                    if vm["uuid"] in done:
                        vm["released"] = True
                        for key in ("release_result", "released_at", "released_how", "released_by"):
                            vm[key] = done[vm["uuid"]].get(key)
                    elif vm["uuid"] in errors:
                        vm["release_error"] = errors[vm["uuid"]]
                if not _journal.pending_vms(j) and not _journal.is_final(j):
                    _journal.mark_final(j, "released", "vm_quiesce state=released")
            updated = _journal.update(fence.state_dir, journal["run_id"], apply)
            _lock.release(fence.state_dir, list(done), _journal.run_of(journal))
            if _journal.is_final(updated):
                _lock.release(fence.state_dir, [v["uuid"] for v in updated["vms"]], _journal.run_of(journal))
            for vm in pending:
                covered[vm["uuid"]] = {"name": vm.get("name"), "uuid": vm["uuid"], "action": vm["action"],
                                       "release_result": vm.get("release_result"),
                                       "release_error": vm.get("release_error"), "run_id": _journal.run_of(journal),
                                       "released": bool(vm.get("released")), "pause_ms": vm.get("pause_ms"),
                                       "released_by": "release" if vm.get("released") else None,
                                       "released_by_detail": vm.get("released_by"),
                                       "released_at": vm.get("released_at"), "quiesced_at": vm.get("quiesced_at")}
        if run_id is not None and any(vm.get("fence") == "overlay" for j in journals for vm in j.get("vms", [])):
            result["overlays"] = _commit_overlays(fence, run_id, journals, wanted, covered, check_mode)
        out = list(covered.values())
        if wanted is not None:
            out = [covered[u] for u in wanted if u in covered]
            for vm_uuid, vm in wanted.items():
                if vm_uuid not in covered:
                    scope = "run %s" % run_id if run_id else "kvmsnap"
                    out.append({"name": vm["name"], "uuid": vm_uuid, "action": "none", "run_id": None,
                                "released": True, "released_by": "none", "released_at": None,
                                "release_result": "not quiesced by %s; left as is (%s)" % (scope, vm["state"])})
        result["vms"] = out
        # changed: this call released or committed something (VMs released earlier are reported, not counted)
        released_here = any(v["uuid"] in released_now and v.get("release_result") in ("resumed", "thawed") for v in out)
        would_release = any(v.get("release_result") == "would release" for v in out)
        result["changed"] = released_here or would_release or bool(result["recovered"]) or bool(result.get("overlays"))
        failed = [v for v in out if v.get("release_error")]
        if failed:
            raise FenceError("vm_quiesce on %s: could not release %s; the journal stays open so the watchdog and "
                             "the next run retry." % (fence.where, "; ".join(v["release_error"] for v in failed)), result)
        if run_id is not None and not check_mode:  # the run's unlock: its locks on this host go (F18 (docs/dev/faults.md#f18))
            if wanted is None:
                result["unlocked"] = _lock.release_run(fence.state_dir, run_id)
            else:
                result["unlocked"] = _lock.release(fence.state_dir, list(wanted), run_id)
            result["changed"] = result["changed"] or bool(result["unlocked"])
        result["msg"] = "%s %d VM(s)" % ("would release" if check_mode else "released",
                                         sum(1 for v in out if v.get("action") != "none"))
        return result
    finally:
        result["warnings"] = fence.warnings
        fence.close()
