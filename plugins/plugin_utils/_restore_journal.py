# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The restore's journal on each KVM host, its resumption by a rerun, and what a failed restore overwrote.

This plugin util is PRIVATE to the collection. It may change without notice.

The restore role writes ``<state_dir>/restore/<run id>.json`` on every KVM host before it stops a VM
(docs/dev/faults.md#restore-resume): the run id (owner of the VMs' held locks), the snapshot, the safety snapshot once it
exists, the stage, and per VM its state before the restore and whether it is to be started. The journal goes when
the run finished (restored, or rolled back). A rerun that finds an open journal of the VMs it restores adopts its
run id (so it owns the held locks), its safety snapshot (no second one of a half-restored state) and its start
decisions (the VM that was running before the first attempt is started, although it is shut off now).
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any, Dict, List, Mapping, Optional

JOURNAL_VERSION = 1


def journal(plan: Mapping[str, Any], host: str, run_id: str, snapshot: str, safety: Optional[str],
            stage: str) -> Dict[str, Any]:
    """The journal record of HOST's part of a restore PLAN."""
    return {"version": JOURNAL_VERSION, "run_id": run_id, "host": host, "snapshot": snapshot,
            "safety_snapshot": safety or None, "stage": stage,
            "vms": [{"name": vm["name"], "uuid": vm["uuid"], "start": vm["start"],
                     "current_state": vm["current_state"]} for vm in (plan.get("hosts") or {}).get(host) or []]}


def entry(slurped: Mapping[str, Any]) -> Dict[str, Any]:
    """{host, path, content} of one journal read by ansible.builtin.slurp (content {} when unreadable)."""
    path = (slurped.get("item") or {}).get("path") or slurped.get("source")
    try:
        rec = json.loads(base64.b64decode(slurped.get("content") or "").decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        rec = {}
    if not isinstance(rec, dict):
        rec = {}
    return {"host": rec.get("host"), "path": path, "content": rec}


def resume(plan: Mapping[str, Any], journals: List[Mapping[str, Any]], snapshot: str) -> Dict[str, Any]:
    """Adopt the open journal(s) of an interrupted restore of the planned VMs.

    JOURNALS: [{host, path, content}]. Returns {plan, run_id, safety, journals, errors}; run_id None when
    nothing is to be resumed."""
    wanted = {vm["uuid"] for entries in (plan.get("hosts") or {}).values() for vm in entries}
    hits = []
    for j in journals or []:
        rec = j.get("content") or {}
        if not isinstance(rec, dict) or rec.get("stage") == "done":
            continue
        if wanted & {vm.get("uuid") for vm in rec.get("vms") or []}:
            hits.append(dict(j, content=rec))
    out: Dict[str, Any] = {"plan": plan, "run_id": None, "safety": None, "errors": [],
                           "journals": ["%s:%s" % (j.get("host"), j.get("path")) for j in hits]}
    if not hits:
        return out
    run_ids = sorted({j["content"].get("run_id") for j in hits})
    where = ", ".join(out["journals"])
    if len(run_ids) > 1:
        out["errors"].append("the VMs to restore are in several interrupted restores (%s: %s); rerun with the VMs "
                             "of one of them, or remove the journals of those you finished by hand"
                             % (", ".join(str(r) for r in run_ids), where))
        return out
    rec = hits[0]["content"]
    if rec.get("snapshot") != snapshot:
        out["errors"].append("run %s was restoring these VMs from snapshot %s and was interrupted (journal %s); rerun "
                             "with kvmsnap_restore_snapshot=%s to complete it, or remove the journal to start over"
                             % (rec.get("run_id"), rec.get("snapshot"), where, rec.get("snapshot")))
        return out
    before = {vm.get("uuid"): vm for j in hits for vm in j["content"].get("vms") or []}
    new_plan = copy.deepcopy(dict(plan))
    for entries in new_plan.get("hosts", {}).values():
        for vm in entries:
            old = before.get(vm["uuid"])
            if old:
                vm["start"] = old.get("start") or vm["start"]
                vm["current_state"] = old.get("current_state") or vm["current_state"]
    safeties = {j["content"].get("safety_snapshot") for j in hits} - {None}
    out.update(plan=new_plan, run_id=rec.get("run_id"), safety=sorted(safeties)[0] if safeties else None)
    return out


def overwritten(disks: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The volumes and the files/LUNs that ontap_restore (a loop result) overwrote, also by a failed item.

    A whole-volume restore is ``whole`` (no safety snapshot survives it: it cannot be rolled back)."""
    out: List[Dict[str, Any]] = []
    for res in (disks or {}).get("results") or []:
        vol = res.get("vol") or {}
        done = res.get("restored") or []
        if any(r.get("type") == "volume" and r.get("method") != "check_mode" for r in done):
            out.append({"key": vol.get("key"), "controller": vol.get("controller"), "svm": vol.get("svm"),
                        "volume": vol.get("volume"), "files": [], "luns": [], "whole": True})
            continue
        files = [r.get("path") for r in done if r.get("type") == "file" and r.get("method") != "check_mode"]
        luns = [r.get("path") for r in done if r.get("type") == "lun" and r.get("method") != "check_mode"]
        if files or luns:
            out.append({"key": vol.get("key"), "controller": vol.get("controller"), "svm": vol.get("svm"),
                        "volume": vol.get("volume"), "files": files, "luns": luns, "whole": False})
    return out


def aside(per_host_stop: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Where each VM's domain XML and NVRAM before the restore were copied: [{host, vm, xml, nvram}]."""
    out = []
    for host in sorted(per_host_stop or {}):
        for res in (per_host_stop[host] or {}).get("results") or []:
            if isinstance(res.get("aside"), dict):
                out.append({"host": host, "vm": (res.get("vm") or {}).get("name"), "xml": res["aside"].get("xml"),
                            "nvram": res["aside"].get("nvram")})
    return out


def stopped(stop: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The vm_restore (define=false) loop results of the VMs that were copied aside and stopped: to put back."""
    return [dict(r) for r in (stop or {}).get("results") or []
            if isinstance(r.get("aside"), dict) and not r.get("failed") and not r.get("skipped")]


def rolled_back(rollback: Mapping[str, Any]) -> List[Optional[str]]:
    """Keys of the volumes whose overwritten files were restored from the safety snapshot."""
    return [(r.get("vol") or {}).get("key") for r in (rollback or {}).get("results") or []
            if not r.get("failed") and not r.get("skipped")]
