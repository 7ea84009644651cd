# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The overlay state of a fence run in its journal: written ahead of the overlay, updated after it and after
every commit attempt, so the watchdog, the next run and the recovery find what is left (docs/dev/overlay.md).

This module util is PRIVATE to the collection. It may change without notice.

Each VM entry of the run's journal (``_journal``) that takes the overlay fence carries::

    "fence": "overlay",
    "overlays": [{"target": "vda", "base": "/ds/vm1.qcow2", "format": "qcow2",
                  "overlay": "/ds/.kvmsnap-overlay.<uuid>.vda.<run>.qcow2",
                  "state": "planned|created|absent|failed|committed",
                  "overlay_at": 1764151200.52, "commit_started_at": 1764151201.9,
                  "attempts": 0, "error": null, "removed": false, "updated": 1764151200.5}]

``overlay_at`` .. ``commit_started_at`` is the window in which the base image holds the disk as of the overlay
point: an array snapshot whose create time lies inside it captured that point.

``planned``: written before the VM is quiesced (the overlay may exist once the snapshot call was made);
``created``: the snapshot call succeeded; ``absent``: it failed (libvirt's atomic snapshot left every disk on its
image); ``failed``: the last commit attempt failed (the VM runs on its overlay: retried, never dropped);
``committed``: the disk is back on its image. An overlay is *pending* until it is committed or absent and its
file is gone; a journal with a pending overlay is never pruned.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal

OVERLAY_STATES = ("planned", "created", "absent", "failed", "committed")


def _vm_entry(journal: Dict[str, Any], vm_uuid: str) -> Dict[str, Any]:
    for vm in journal.get("vms", []):
        if vm.get("uuid") == vm_uuid:
            return vm
    raise _journal.JournalError("journal %s has no VM %s" % (journal.get("run_id"), vm_uuid))


def set_plan(journal: Dict[str, Any], vm_plan: Dict[str, Any], now: Optional[float] = None) -> None:
    """Record (in place) the fence a VM takes and, for the overlay fence, its planned overlays."""
    vm = _vm_entry(journal, vm_plan["uuid"])
    vm["fence"] = vm_plan["fence"]
    vm["fence_reason"] = vm_plan.get("reason")
    if vm_plan["fence"] == "overlay":
        at = time.time() if now is None else now
        vm["overlays"] = [{"target": o["target"], "base": o["base"], "format": o.get("format"),
                           "overlay": o["overlay"], "state": "planned", "attempts": 0, "error": None,
                           "removed": False, "updated": at} for o in vm_plan.get("overlays", [])]


def set_overlay(journal: Dict[str, Any], vm_uuid: str, target: str, now: Optional[float] = None, **fields: Any) -> None:
    """Update (in place) the overlay of disk TARGET of VM VM_UUID."""
    if "state" in fields and fields["state"] not in OVERLAY_STATES:
        raise _journal.JournalError("overlay state %r is not one of %s" % (fields["state"], ", ".join(OVERLAY_STATES)))
    for ovl in _vm_entry(journal, vm_uuid).get("overlays") or []:
        if ovl.get("target") == target:
            ovl.update(fields)
            ovl["updated"] = time.time() if now is None else now
            return
    raise _journal.JournalError("journal %s has no overlay of disk %s of VM %s"
                                % (journal.get("run_id"), target, vm_uuid))


def pending(journal: Dict[str, Any]) -> List[Tuple[Dict[str, Any], Dict[str, Any]]]:
    """(VM entry, overlay) of every overlay of JOURNAL that is not committed and removed yet."""
    return [(vm, ovl) for vm in journal.get("vms", []) for ovl in vm.get("overlays") or [] if _journal.overlay_pending(ovl)]


# -- read-modify-write under the journal lock -------------------------------------------------------------------


def write_plans(state_dir: str, journal_id: str, plans: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Write ahead: the fence and planned overlays of every VM of PLANS, before any VM is quiesced."""
    def apply(j: Dict[str, Any]) -> None:
        for vm_plan in plans:
            set_plan(j, vm_plan)
    return _journal.update(state_dir, journal_id, apply)


def record_overlays(state_dir: str, journal_id: str, outcomes: List[Dict[str, Any]]) -> Dict[str, Any]:
    """After the release: created or absent, per VM outcome of ``_overlay.overlay_vm``."""
    def apply(j: Dict[str, Any]) -> None:
        for out in outcomes:
            vm = _vm_entry(j, out["uuid"])
            for ovl in vm.get("overlays") or []:
                set_overlay(j, out["uuid"], ovl["target"], state="created" if out.get("created") else "absent",
                            error=None if out.get("created") else out.get("error"), overlay_at=out.get("overlay_at"))
    return _journal.update(state_dir, journal_id, apply)


def record_commit(state_dir: str, journal_id: str, vm_uuid: str, result: Dict[str, Any]) -> Dict[str, Any]:
    """One commit attempt of ``_overlay.commit_disk`` (with ``attempts``)."""
    def apply(j: Dict[str, Any]) -> None:
        vm = _vm_entry(j, vm_uuid)
        prior: Dict[str, Any] = next((o for o in vm.get("overlays") or [] if o.get("target") == result["target"]), {})
        fields: Dict[str, Any] = {"attempts": int(prior.get("attempts") or 0) + 1}
        if prior.get("commit_started_at") is None and result.get("started_at") is not None:
            fields["commit_started_at"] = result["started_at"]  # the base's stable window ends here
        if result.get("error"):
            fields.update(state="failed", error=result["error"])
        else:
            fields.update(state="committed", error=None, removed=bool(result.get("removed")),
                          remove_error=result.get("remove_error"), result=result.get("result"),
                          commit_ms=result.get("commit_ms"))
        set_overlay(j, vm_uuid, result["target"], **fields)
    return _journal.update(state_dir, journal_id, apply)
