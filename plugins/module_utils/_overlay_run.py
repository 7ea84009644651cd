# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The overlay fence of one host's VMs, journalled: plan, write ahead, overlay every VM in parallel, record;
later commit every overlay, recording each attempt (docs/dev/overlay.md).

This module util is PRIVATE to the collection. It may change without notice.

The journal (``_journal``) must exist (the Fence's ``start_run`` writes it with locks and watchdog); these
functions add the overlay state of its VMs (``_overlay_journal``).
"""

from __future__ import annotations

from typing import Any, Dict, List

from ansible_collections.kvmsnap.core.plugins.module_utils._fence_conn import SharedConnection
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_gang import parallel
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay import COMMIT_ATTEMPTS, COMMIT_TIMEOUT, commit_vm, inspect, overlay_vm, plan, precreate
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_journal import record_commit, record_overlays, write_plans


def plan_vms(sc: SharedConnection, vm_uuids: List[str], run_id: str) -> List[Dict[str, Any]]:
    """The fence of every VM (``_overlay.plan``: overlay with its overlays, or direct with the reason)."""
    return [plan(inspect(sc, vm_uuid), run_id) for vm_uuid in vm_uuids]


def fence_overlays(sc: SharedConnection, state_dir: str, journal_id: str, plans: List[Dict[str, Any]], run_id: str,
                   mode: str = "suspend", agent_timeout: int = 10, precreated: bool = False) -> List[Dict[str, Any]]:
    """Journal the plans ahead, then quiesce → overlay → release every overlay-fenced VM of PLANS in parallel, then
    record what exists. Returns the outcomes of ``_overlay.overlay_vm`` (same order as the overlay-fenced plans).

    PRECREATED: make the overlay files first (``_overlay.precreate``, after the journal names them; a VM whose
    files cannot be made gets an outcome with the error and is not quiesced)."""
    write_plans(state_dir, journal_id, plans)
    todo = [p for p in plans if p["fence"] == "overlay"]
    sc.set_slots(max(1, min(8, len(todo))))

    def one(vm_plan: Dict[str, Any]) -> Dict[str, Any]:
        if precreated and vm_plan["overlays"]:
            try:
                precreate(sc, vm_plan["uuid"], vm_plan["overlays"])
            except Exception as err:
                return {"uuid": vm_plan["uuid"], "name": vm_plan.get("name"), "action": "none", "created": False,
                        "error": "overlay files of VM %s (%s) could not be made: %s; the VM was not touched"
                        % (vm_plan.get("name"), vm_plan["uuid"], err), "pause_ms": 0.0}
        return overlay_vm(sc, vm_plan, run_id, mode, agent_timeout, precreated)
    outcomes = parallel(todo, one)
    record_overlays(state_dir, journal_id, outcomes)
    return outcomes


def commit_overlays(sc: SharedConnection, state_dir: str, journal_id: str, plans: List[Dict[str, Any]],
                    outcomes: List[Dict[str, Any]], timeout: float = COMMIT_TIMEOUT,
                    attempts: int = COMMIT_ATTEMPTS) -> List[Dict[str, Any]]:
    """Commit the overlays of every VM whose overlay was created, VMs in parallel, each attempt journalled.

    Returns [{uuid, name, disks: [commit_disk result with attempts]}]."""
    created = {o["uuid"] for o in outcomes if o.get("created")}
    todo = [p for p in plans if p["fence"] == "overlay" and p["uuid"] in created]

    def one(vm_plan: Dict[str, Any]) -> Dict[str, Any]:
        def journal_it(res: Dict[str, Any]) -> None:
            record_commit(state_dir, journal_id, vm_plan["uuid"], res)
        disks = commit_vm(sc, vm_plan["uuid"], vm_plan["overlays"], timeout, attempts, on_attempt=journal_it)
        return {"uuid": vm_plan["uuid"], "name": vm_plan.get("name"), "disks": disks}
    return parallel(todo, one)
