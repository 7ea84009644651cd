# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vm_backup: quiesce → one consistent snapshot per controller → release, in one process; with its
ONTAP pre-flight before the fence and the settling (confirm good / mark late) after it.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils import _domain_xml, _journal, _lock, _storage_map
from ansible_collections.kvmsnap.core.plugins.module_utils import _snapshot_naming as naming
from ansible_collections.kvmsnap.core.plugins.module_utils._backup_overlay import DEFAULT_FENCE, OverlayFence, recover_leftovers
from ansible_collections.kvmsnap.core.plugins.module_utils._fence import Fence, FenceInterrupted, check_locks, release_on_signals, run_id_param
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_conn import resolve_vms
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_errors import FenceError
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_mapping import parse_vm_mapping, resolve_mapping_svms
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_rules import elapsed_ms, plan, wall_time, weakest
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_args import OptionError, parse_volumes
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect as ontap_connect
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_snapshot_ops import confirm_snapshot_set, recover_orphans
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_snapshot_set import SnapshotSetPlan
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_window import window_faults
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import existing_set


def run_backup(params: Dict[str, Any], check_mode: bool = False,
               connect: Optional[Callable[[Dict[str, Any], str], Any]] = None) -> Dict[str, Any]:
    """vm_backup: the whole fence of one host. Raises FenceError (with .result) on failure."""
    mode = params.get("mode") or "auto"
    deadline = float(params["deadline"])
    fence = Fence(params.get("uri"), params["state_dir"], params.get("retries", 3), params.get("agent_timeout", 10),
                  "vm_backup", check_mode)
    run_id = run_id_param(params) or _journal.new_run_id("backup")
    confirm = params.get("confirm", True)
    grace = float(params.get("confirm_grace") or CONFIRM_GRACE)
    result: Dict[str, Any] = {"changed": False, "vms": [], "snapshots": [], "recovered": [], "run_id": run_id,
                              "method": None, "trust": None}
    outcomes: List[Dict[str, Any]] = []
    overlays = OverlayFence(fence, run_id, params.get("fence") or DEFAULT_FENCE, mode)
    ontap: Any = None
    snapset: Optional[SnapshotSetPlan] = None
    snap: Dict[str, Any] = {}
    try:
        # ---- pre-flight: nothing is touched before every check passed -------------------------------
        policy = params.get("policy") or "daily"
        try:
            name = params.get("name") or naming.default_name(policy)
            naming.validate_snapshot_name(name)
            # pending until confirmed; `until` is when this run can no longer confirm it (see until_for)
            until = until_for(time.time(), deadline, grace)
            comment = naming.build_comment(policy, run_id, host_token(params.get("kvm_host")), params.get("comment"),
                                           state="pending", until=until)
        except naming.SnapshotNameError as err:
            raise FenceError(str(err)) from None
        label = params.get("snapmirror_label")
        result.update(name=name, comment=comment)
        fence.prepare_state_dir()
        overlays.begin_preparing()
        vms = resolve_vms(fence.sc.conn, params.get("vms") or [], fence.uri)
        volumes = _backup_volumes(fence, vms, params)
        result["volumes"] = ["%s:%s" % v for v in volumes]
        if connect is None:
            connect = ontap_connect
        ontap, existing, volumes = _ontap_preflight(connect, params, volumes, name, run_id)
        result["volumes"] = ["%s:%s" % v for v in volumes]
        if existing:
            # F11 (docs/dev/faults.md#f11): a rerun of a backup that is already complete changes nothing and quiesces nobody
            result["snapshots"] = [{"svm": s["svm"], "volume": s["volume"], "name": name, "uuid": s.get("uuid"),
                                    "create_time": s.get("create_time")} for s in existing]
            result["vms"] = [{"name": vm["name"], "uuid": vm["uuid"], "action": "none", "pause_ms": 0.0,
                              "consistency": None, "detail": "snapshot %s already taken" % name} for vm in vms]
            result["msg"] = ("snapshot %s already exists on %s with kvmsnap metadata; nothing quiesced"
                             % (name, ", ".join(result["volumes"])))
            return result
        result["recovered"] = fence.recover(skip=run_id)
        result["recovered"].extend(recover_leftovers(fence, vms, run_id, check_mode))
        if result["recovered"]:
            vms = resolve_vms(fence.sc.conn, [vm["uuid"] for vm in vms], fence.uri)
        result["recovered_snapshots"] = _recover_orphans(ontap, volumes, check_mode, fence.warnings)
        overlays.plan(vms)  # fence=overlay fails here, before anything is touched, for a VM that cannot take it
        if check_mode:
            check_locks(fence.state_dir, vms, run_id)
            result["vms"] = [overlays.report(e) for e in plan(vms, mode)]
            result["changed"] = True
            result["msg"] = ("check mode: would quiesce %d VM(s) (mode %s), snapshot %s on %s and release them; "
                             "nothing touched" % (sum(1 for v in result["vms"] if v["action"] != "none"), mode, name,
                                                  ", ".join(result["volumes"])))
            return result
        # ---- before the fence: everything but the point in time (look-ups, method, a temporary CG) -------
        # with overlay VMs the watchdog's start-up runs beside the ONTAP preparation, not before the first overlay
        # (nothing is quiesced yet)
        started = bool(overlays.overlay_uuids())
        if started:
            _start_run(fence, vms, mode, deadline, run_id, result)
        try:
            snapset = ontap.prepare_snapshot_set(list(volumes), name, comment=comment, snapmirror_label=label,
                                                 precheck=False, until=until)  # names checked in the pre-flight
        except (OntapError, OptionError) as err:
            if started:
                fence.finish([], by="vm_backup run %s (preparing the snapshot failed)" % run_id)
            raise FenceError("vm_backup on ONTAP %s: preparing snapshot %s of %s failed: %s; nothing was quiesced."
                             % (params.get("hostname"), name, ", ".join(result["volumes"]), err)) from None
        # ---- the fence ------------------------------------------------------------------------------
        with release_on_signals(), quick_thread_switches():
            if not started:
                _start_run(fence, vms, mode, deadline, run_id, result)
            # the watchdog's deadline, on this process's clock
            deadline_mono = time.monotonic() + float((fence.journal or {}).get("deadline") or time.time() + deadline) \
                - time.time()
            try:
                # overlay VMs: quiesce → overlays → release, before the direct VMs are quiesced (they run meanwhile)
                overlays.run()
                ov_uuids = {o["uuid"] for o in overlays.fence_outcomes()}
                direct_vms = [vm for vm in vms if vm["uuid"] not in ov_uuids]
                outcomes = fence.quiesce(direct_vms, mode, bool(params.get("allow_crash_consistent")), record=False)
            except BaseException:
                fence.emergency_release()
                raise
            failed = [o for o in outcomes if o.get("error")] + overlays.failed()
            gang = None
            try:
                if not failed:
                    snap = _snapshot_within(ontap, snapset, deadline_mono, lambda: fence.prepare_release(outcomes))
                    gang = snap.pop("gang", None)
            finally:
                try:
                    fence.release(outcomes, gang=gang)  # always: success, error, timeout, signal
                finally:
                    if "released" in snap:
                        snap["released"].set()  # the worker may commit now
                # the overlay VMs stay locked until their overlays are committed (no other run fences them meanwhile)
                fence.finish(outcomes + overlays.fence_outcomes(), by="vm_backup run %s" % run_id,
                             keep_locked=overlays.created_uuids())
        # ---- after the release: commit (started by the worker), comments, temporary CG, read-back ------
        if snap.get("done_in_window") and snap.get("done") is not None:
            # the overlays go back once the point in time exists (the worker's take and commit are done), while
            # the snapshot is finished here; later (or never taken) below
            overlays.start_commit(snap["done"], LATE_WAIT)
        late = snap.pop("late", None)
        snap["was_late"] = late is not None
        give_up = time.monotonic() + LATE_WAIT
        if late is not None:  # released at the deadline; give the call a bounded time to finish (F3 (docs/dev/faults.md#f3))
            late.wait(LATE_WAIT)
        _finish_snapshot(ontap, snapset, snap, give_up)
        # the overlays go back into their images once the snapshot is finished (or abandoned: then not good)
        commit_errors = overlays.commit()
        fence.warnings.extend(commit_errors)
        for o in outcomes:
            if o["action"] != "none" and o.get("t_released"):
                o["pause_ms"] = elapsed_ms(o["t_quiesced"], o["t_released"])
            else:
                o["pause_ms"] = 0.0
        result["changed"] = True
        if failed:
            result["vms"] = overlays.vm_report(outcomes)
            raise FenceError("vm_backup on %s: %d of %d VM(s) could not be quiesced (%s); no snapshot was taken and "
                             "the VMs already quiesced were released." % (
                                 fence.where, len(failed), len(outcomes), "; ".join(o["error"] for o in failed)), result)
        in_window = snap.get("done_in_window", False)
        result["snapshots"] = (snap.get("result") or {}).get("snapshots", [])
        # the trust rule of the overlay VMs: the snapshot lies inside every overlay window
        faults = window_faults([s.get("create_time") for s in result["snapshots"]], overlays.windows(),
                               snap.get("taken_at"))
        if faults:
            result["window_faults"] = faults
            in_window = False
        for o in outcomes:
            if not in_window:
                o["consistency"] = "crash" if o["consistency"] != "offline" else "offline"
        result["vms"] = overlays.vm_report(outcomes, in_window)
        result["method"] = (snap.get("result") or {}).get("method")
        result["consistency"] = weakest([v["consistency"] for v in result["vms"] if v.get("consistency")]) \
            if result["snapshots"] else None
        result["snapshot_ms"] = snap.get("ms")
        result["max_pause_ms"] = max([v.get("pause_ms") or 0.0 for v in result["vms"]] or [0.0])
        released_errors = [o["release_error"] for o in outcomes if o.get("release_error")]
        if result["snapshots"] and not snap.get("error"):
            bad = _verify_snapshots(ontap, result["snapshots"], fence.warnings)
            if bad:
                snap["error"] = "the controller reports %s; not a usable backup" % "; ".join(bad)
        result["trust"] = _settle(ontap, volumes, name, run_id, result, snap, in_window, confirm, fence.warnings)
        if snap.get("error") or not in_window or released_errors:
            parts = []
            if snap.get("error") and in_window is False and late is not None:
                parts.append("the snapshot %s on %s did not complete within the deadline of %ds (%s); the VMs were "
                             "released at the deadline and no snapshot is recorded" % (
                                 name, ", ".join(result["volumes"]), deadline, snap["error"]))
            elif snap.get("error"):
                parts.append("the snapshot %s on %s failed: %s" % (name, ", ".join(result["volumes"]), snap["error"]))
            elif result.get("window_faults"):
                parts.append("the snapshot %s on %s lies outside the overlay window of some VM(s) (%s): %s" % (
                    name, ", ".join(result["volumes"]), "; ".join(result["window_faults"]), _trust_text(result["trust"])))
            elif not in_window:
                parts.append("the snapshot %s on %s did not complete within the deadline of %ds; the VMs were "
                             "released at the deadline%s" % (
                                 name, ", ".join(result["volumes"]), deadline,
                                 " and it completed later: %s" % _trust_text(result["trust"]) if result["snapshots"]
                                 else "; no snapshot is recorded"))
            if released_errors:
                parts.append("release failed: %s" % "; ".join(released_errors))
            else:
                parts.append("every VM was released")
            raise FenceError("vm_backup on %s: %s." % (fence.where, "; ".join(parts)), result)
        # every VM this run quiesced: the direct fence's and the overlay fence's (OUTCOMES holds the direct ones only)
        quiesced = [v for v in result["vms"] if v.get("action") not in (None, "none")]
        overlaid = sum(1 for v in quiesced if v.get("fence") == "overlay")
        result["msg"] = "snapshot %s of %s taken with %d VM(s) quiesced (mode %s%s); longest pause %.1f ms; %s" % (
            name, ", ".join(result["volumes"]), len(quiesced), mode,
            ", %d under the overlay fence" % overlaid if overlaid else "", result["max_pause_ms"],
            _trust_text(result["trust"]))
        if result["trust"] == "confirm_failed":
            raise FenceError("vm_backup on %s: snapshot %s of %s was taken inside the window but could not be "
                             "confirmed (%s); it stays pending and is never used as a backup. Run the backup again."
                             % (fence.where, name, ", ".join(result["volumes"]),
                                result.get("trust_error")), result)
        return result
    except FenceInterrupted as err:
        result["vms"] = overlays.vm_report(outcomes)
        raise FenceError("vm_backup on %s: %s; every VM quiesced by this run was released." % (fence.where, err),
                         result) from None
    finally:
        overlays.preparing.end()
        try:  # whatever failed, created overlays are committed now (or stay pending for the watchdog/next run)
            fence.warnings.extend(overlays.commit())
        except BaseException as err:  # e.g. a second signal: the journal keeps them pending
            fence.warnings.append("overlays not committed (%s); the watchdog and the next run commit them" % err)
        finally:
            fence.unlock()
        if snapset is not None and not snapset.finished and not _abandon_if_running(snap):
            ontap.abort_snapshot_set(snapset)  # e.g. a VM could not be quiesced: remove the temporary CG now
        if ontap is not None:
            fence.warnings.extend(w for w in ontap.warnings if w not in fence.warnings)
        result["warnings"] = fence.warnings
        fence.close()


def _start_run(fence: Fence, vms: List[Dict[str, Any]], mode: str, deadline: float, run_id: str,
               result: Dict[str, Any]) -> None:
    """Lock the VMs, write the journal ahead, start the watchdog (``Fence.start_run``); a live lock of another run
    fails the run naming its holder."""
    try:
        run = fence.start_run(vms, mode, deadline, release_on_owner_exit=True, run_id=run_id)
    except _lock.LockBusy as err:
        raise FenceError(str(err), dict(result, holder=err.holder)) from None
    result.update(run_id=run_id, lock_takeovers=run["takeovers"], watchdog_pid=(run["watchdog"] or {}).get("pid"))


def _recover_orphans(ontap: Any, volumes: List[tuple], check_mode: bool, warnings: List[str]) -> Dict[str, Any]:
    """Before the fence: mark late what dead runs left pending on these volumes, remove their temp CGs."""
    try:
        res = recover_orphans(ontap, list(volumes), check_mode=check_mode)
    except Exception as err:  # a failed clean-up never blocks a backup; the next run tries again
        warnings.append("recovery of orphaned snapshots on %s failed: %s; the next run tries again"
                        % (", ".join("%s:%s" % v for v in volumes), err))
        return {"marked_late": [], "removed_cgs": [], "error": str(err)}
    if res["marked_late"] or res["removed_cgs"]:
        warnings.append("recovered leftovers of dead runs: %s" % res["msg"])
    return {"marked_late": res["marked_late"], "removed_cgs": res["removed_cgs"]}


def _verify_snapshots(ontap: Any, snapshots: List[Dict[str, Any]], warnings: List[str]) -> List[str]:
    """P4 (docs/dev/faults.md#p4): read every new snapshot back (after the release) and require its state to be valid."""
    bad = []
    for snap in snapshots:
        try:
            found = ontap.get_snapshot(snap["svm"], snap["volume"], snap["name"])
        except Exception as err:
            warnings.append("could not read snapshot %s on %s:%s back: %s"
                            % (snap["name"], snap["svm"], snap["volume"], err))
            continue
        if not found:
            bad.append("snapshot %s missing on %s:%s" % (snap["name"], snap["svm"], snap["volume"]))
        elif found.get("state") not in (None, "valid"):
            bad.append("snapshot %s on %s:%s in state %s" % (snap["name"], snap["svm"], snap["volume"],
                                                             found.get("state")))
        else:
            snap["state"] = found.get("state") or "valid"
    return bad


def host_token(name: Optional[str] = None) -> str:
    """The snapshot comment's `host=`: NAME (the inventory name the roles pass as kvm_host), else the OS hostname;
    characters the comment does not allow become '_'."""
    host = re.sub(r"[^A-Za-z0-9_.:@-]", "_", name or socket.gethostname())[:60]
    return host or "host"


def _backup_volumes(fence: Fence, vms: List[Dict[str, Any]], params: Dict[str, Any]) -> List[tuple]:
    """The (svm, volume) set of the run: explicit `volumes`, or the volumes under the VMs' disks."""
    explicit: List[tuple] = []
    if params.get("volumes"):
        try:
            explicit = parse_volumes(params["volumes"], None)
        except OptionError as err:
            raise FenceError(str(err)) from None
    controller = params.get("hostname")
    try:
        datastores = _storage_map.parse_datastores(params.get("datastores"), controller)
    except _storage_map.StorageMapError as err:
        raise FenceError(str(err)) from None
    mapping = parse_vm_mapping(params.get("vm_mapping"), controller)
    if not datastores and not mapping:
        if not explicit:
            raise FenceError("vm_backup: no volume to snapshot; give volumes, datastores or vm_mapping so every "
                             "disk of %s maps to an ONTAP volume." % ", ".join(vm["name"] for vm in vms))
        return explicit
    # the one disk → volume mapping (vm_info's); vm_backup reads no ONTAP facts for it: datastores and vm_mapping
    mapper = _storage_map.StorageMapper(_storage_map.StorageInventory(), datastores, mapping,
                                        vm_mapping_covers_files=True)
    unmapped: List[str] = []
    out = list(explicit)
    for vm in vms:
        def xml_of(conn: Any, _attempt: int, vm_uuid: str = vm["uuid"]) -> str:
            return fence.sc.domain(conn, vm_uuid).XMLDesc(0)
        xml = fence.sc.call(xml_of)
        try:
            record = dict(_domain_xml.parse_domain_xml(xml), name=vm["name"], uuid=vm["uuid"])
        except _domain_xml.DomainXmlError as err:
            raise FenceError("vm_backup: VM %s: libvirt returned a domain XML that %s; nothing was quiesced."
                             % (vm["name"], err)) from None
        for problem in mapper.map_vm(record):
            if problem["severity"] == "error":
                unmapped.append(problem["reason"])
            else:
                fence.warnings.append(problem["reason"])
        for disk in record["disks"]:
            if disk["skipped"] and disk["path"]:
                fence.warnings.append("%s: %s %s (%s) is not backed up"
                                      % (vm["name"], disk["device"], disk["target"], disk["path"]))
        refs = _storage_map.volumes_of(record)
        for ctrl, svm, volume in refs:
            if controller is not None and str(ctrl).lower() != str(controller).lower():
                unmapped.append("VM %s: volume %s:%s is on controller %s, and this task snapshots on %s (option "
                                "hostname) only" % (vm["name"], svm, volume, ctrl, controller))
            elif (svm, volume) not in out:
                out.append((svm, volume))
        if not refs and vm["state"] != "shutoff":
            fence.warnings.append("VM %s has no disk on a mapped volume" % vm["name"])
    if unmapped:
        raise FenceError("vm_backup: %d disk(s) are not on a mapped ONTAP volume: %s. Add their datastore to "
                         "datastores (or the VM to vm_mapping), or detach them; nothing was quiesced."
                         % (len(unmapped), "; ".join(unmapped)))
    if not out:
        raise FenceError("vm_backup: the VMs %s have no disk on any mapped volume; nothing to snapshot."
                         % ", ".join(vm["name"] for vm in vms))
    return out


def _ontap_preflight(connect: Callable[[Dict[str, Any], str], Any], params: Dict[str, Any], volumes: List[tuple],
                     name: str, run_id: Optional[str] = None) -> Tuple[Any, List[Dict[str, Any]], List[tuple]]:
    """Connect and check every volume exists (F16 (docs/dev/faults.md#f16)); return the client, the snapshots NAME
    already has and the volumes (the SVM of vm_mapping entries without one filled in).

    A rerun whose snapshot already exists on every volume as run RUN_ID's or as a confirmed (good) backup is a no-op
    (F11 (docs/dev/faults.md#f11)); any other existing snapshot of that name is refused, never overwritten
    (_snapshot_naming.existing_set decides).
    """
    try:
        ontap = connect(params, "vm_backup")
        # the login may create and confirm snapshots: checked before any VM is quiesced (docs/security.md)
        rights = ontap.privileges_for(["read", "snapshot_create", "snapshot_modify"])
        if not rights["ok"]:
            raise FenceError("vm_backup pre-flight on ONTAP %s: %s; nothing was quiesced. %s"
                             % (params.get("hostname"), rights["message"], rights["hint"]))
        volumes = resolve_mapping_svms(ontap, volumes)
        missing, existing = [], []
        found: Dict[str, Optional[Dict[str, Any]]] = {}
        for svm, vol in volumes:
            try:
                ontap.get_volume(svm, vol)
            except OntapError as err:
                if err.is_not_found:
                    missing.append("%s:%s" % (svm, vol))
                    continue
                raise
            found["%s:%s" % (svm, vol)] = None
            for snap in ontap.list_snapshots(svm, vol, name):
                if snap.get("name") == name:
                    existing.append(dict(snap, svm=svm, volume=vol))
                    found["%s:%s" % (svm, vol)] = existing[-1]
    except (OntapError, OptionError) as err:
        raise FenceError("vm_backup pre-flight on ONTAP %s failed: %s; nothing was quiesced."
                         % (params.get("hostname"), err)) from None
    if missing:
        raise FenceError("vm_backup: volume(s) %s not found on ONTAP %s; nothing was quiesced. Check the SVM and "
                         "volume names in volumes/datastores/vm_mapping." % (", ".join(missing), params.get("hostname")))
    verdict = existing_set(name, found, run_id, accept="good")
    if verdict["verdict"] == "clash":
        raise FenceError("vm_backup on ONTAP %s: %s; choose another name — existing snapshots are never overwritten. "
                         "Nothing was quiesced." % (params.get("hostname"), verdict["reason"]))
    return ontap, existing, volumes


def _snapshot_within(ontap: Any, snapset: SnapshotSetPlan, deadline_mono: float,
                     while_waiting: Optional[Callable[[], Any]] = None) -> Dict[str, Any]:
    """Take SNAPSET's point in time in a worker thread; wait for it until the deadline at most
    (F3 (docs/dev/faults.md#f3)). The worker commits a two-phase snapshot once the caller has released the VMs
    (it sets RELEASED), or COMMIT_AFTER seconds after the take if the release takes longer.

    Returns {ms, done_in_window, error?, done, released, late?}: DONE is set when the worker ended (take and commit). After
    the deadline the caller releases the VMs; the worker keeps going and LATE (an event set by the take's end)
    gives the caller a bounded time to learn the outcome.
    """
    box: Dict[str, Any] = {}
    taken = threading.Event()
    done = threading.Event()
    released = threading.Event()  # set by the caller once every VM was released
    box["released"] = released
    handoff = threading.Lock()  # decides who finishes SNAPSET: the caller, or the worker once abandoned
    box["handoff"] = handoff

    def work() -> None:
        t0 = time.monotonic()
        try:
            ontap.take_snapshot_set(snapset, deadline=deadline_mono)
        except Exception as err:  # reported to the caller
            box["error"] = str(err)
        t1 = time.monotonic()
        box["ms"] = elapsed_ms(t0, t1)
        if "error" not in box:
            box["taken_at"] = wall_time(t1)
        taken.set()
        if snapset.two_phase and "error" not in box:
            # the commit's calls would compete with the release for the CPU: after it, or at COMMIT_AFTER at the
            # latest (ONTAP holds its I/O fence on the volumes until the commit, and ends the snapshot at its timeout)
            released.wait(COMMIT_AFTER)
        try:
            ontap.commit_snapshot_set(snapset)  # no-op unless two-phase
        except Exception as err:  # the snapshots were removed again: reported after the release
            box["commit_error"] = str(err)
        with handoff:
            done.set()
            abandoned = box.get("abandoned", False)
        if abandoned:  # the run ended without waiting for us: finish alone (pending comment, temporary CG)
            try:
                if snapset.taken:
                    ontap.finish_snapshot_set(snapset, readback=False)
                else:
                    ontap.abort_snapshot_set(snapset)
            except Exception:  # nobody to tell; the next run's recovery handles what is left  # nosec
                pass

    worker = threading.Thread(target=work, name="kvmsnap-snapshot", daemon=True)
    box["done"] = done
    worker.start()
    if while_waiting is not None:  # e.g. start the release workers while the controller works
        box["gang"] = while_waiting()
    left = deadline_mono - time.monotonic()
    if taken.wait(max(0.0, left)):
        box["done_in_window"] = "error" not in box
        return box
    box["done_in_window"] = False
    box["late"] = taken
    return box


def _finish_snapshot(ontap: Any, snapset: SnapshotSetPlan, snap: Dict[str, Any], give_up: float) -> None:
    """After the release: wait for the worker's take and commit until GIVE_UP (time.monotonic()), then finish
    SNAPSET into snap["result"], or put what went wrong in snap["error"]."""
    done = snap.get("done")
    if done is None:  # no VM was quiesced: nothing was taken
        return
    done.wait(max(0.0, give_up - time.monotonic()))  # one LATE_WAIT after the release, for the take and the commit
    if _abandon_if_running(snap):
        if "error" not in snap:
            snap["error"] = "no answer from ONTAP within %ds after the deadline" % LATE_WAIT
        return
    if snap.get("commit_error") and "error" not in snap:
        snap["error"] = snap["commit_error"]
    if "error" in snap or not snapset.taken:
        return
    try:
        snap["result"] = ontap.finish_snapshot_set(snapset)
    except Exception as err:  # reported: the snapshots were removed
        snap["error"] = str(err)


FENCE_SWITCH_INTERVAL = 0.0005  # seconds; Python's default is 0.005


@contextlib.contextmanager
def quick_thread_switches(interval: float = FENCE_SWITCH_INTERVAL) -> Iterator[None]:
    """Inside the fence dozens of threads hand over to each other (quiesce workers, the snapshot worker, release
    workers); Python lets a busy thread keep the interpreter for up to 5 ms before another may run, and each such
    wait lands in every VM's pause. A shorter switch interval for the fence's duration only."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _abandon_if_running(snap: Dict[str, Any]) -> bool:
    """True when the snapshot worker of SNAP still runs; it then finishes the snapshot set alone when ONTAP
    answers (the run does not wait for it)."""
    handoff = snap.get("handoff")
    if handoff is None:
        return False
    with handoff:
        if not snap["done"].is_set():
            snap["abandoned"] = True
    return bool(snap.get("abandoned"))


LATE_WAIT = 10.0  # seconds to learn the outcome of a snapshot still running at the deadline (after the release)
# seconds after the take at which a two-phase snapshot is committed even if the release is still going on: well
# inside ONTAP's fence timeouts (REST action_timeout 20 s, ZAPI cg-start "relaxed" 20 s)
COMMIT_AFTER = 5.0
# seconds after the fence's deadline in which the run may still confirm its snapshot (read-back, verification
# by the role, the confirm call itself); past `until` a pending snapshot is an orphan that recovery marks late
CONFIRM_GRACE = 300.0


def until_for(fence_start: float, deadline: float, grace: float) -> int:
    """The `until` of a snapshot comment: fence start + deadline + confirm grace (epoch seconds, rounded up)."""
    return int(fence_start + deadline + grace) + 1


def _trust_text(trust: Optional[str]) -> str:
    return {"good": "confirmed good", "late": "marked late (crash-consistent; never used as a backup)",
            "pending": "left pending: the role confirms it after verification",
            "pending_late": "still pending (not confirmable: the next run or the recovery playbook marks it late)",
            "confirm_failed": "NOT confirmed (stays pending; never used as a backup)"}.get(trust or "", "no snapshot")


def _settle(ontap: Any, volumes: List[tuple], name: str, run_id: str, result: Dict[str, Any],
            snap: Dict[str, Any], in_window: bool, confirm: bool, warnings: List[str]) -> Optional[str]:
    """After the release: confirm the snapshot good (done in the window, read back valid), or mark it late.

    A snapshot still running after LATE_WAIT cannot be marked (it may not exist yet): it stays pending and
    the next run's recovery marks it late once its `until` has passed.
    """
    if not result["snapshots"]:  # still running after LATE_WAIT: it may appear later, pending
        return "pending_late" if snap.get("was_late") and "result" not in snap else None
    good = in_window and not snap.get("error")
    if good and not confirm:
        return "pending"
    state = "good" if good else "late"
    consistency = result["consistency"] if good else "crash"
    try:
        confirm_snapshot_set(ontap, list(volumes), name, run_id, state=state, consistency=consistency)
    except Exception as err:  # the snapshot stays pending: never a backup
        result["trust_error"] = str(err)
        if good:
            return "confirm_failed"
        warnings.append("could not mark the late snapshot %s late (%s); the next run's recovery marks it"
                        % (name, err))
        return "pending_late"
    return state
