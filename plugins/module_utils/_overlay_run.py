# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The overlay fence of one host's VMs, journalled: plan, write ahead, overlay every VM (OVERLAY_WORKERS at a time), record;
later commit every overlay, recording each attempt (docs/dev/overlay.md).

This module util is PRIVATE to the collection. It may change without notice.

The journal (``_journal``) must exist (the Fence's ``start_run`` writes it with locks and watchdog); these
functions add the overlay state of its VMs (``_overlay_journal``).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils._fence_conn import SharedConnection
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_gang import parallel
from ansible_collections.kvmsnap.core.plugins.module_utils._host_turns import host_switch_lock
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay import COMMIT_ATTEMPTS, COMMIT_TIMEOUT, commit_vm, inspect, overlay_vm, plan, precreate
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_journal import record_commit, record_overlays, write_plans

# How many VMs are overlaid at once (quiesce → overlay → release each), each worker on its own libvirt connection.
# The overlay fence need not hold all VMs at one instant (each VM's base is frozen by its own overlay), so every
# VM's pause is its own quiesce → overlay → release, and VMs overlaid side by side only lengthen each other's: libvirtd
# does the snapshot's work of one VM after the other. Measured on the 2-core lab (minimal guests, suspend, files
# precreated; longest pause of 32 VMs / time to overlay all 32): 1 worker 18-25 ms / 0.85-0.92 s, 2 workers
# 29-44 ms / 0.57-0.65 s, 4 workers 57-61 ms / 0.51 s, 8 workers 94-158 ms / 0.58-0.61 s, all 32 at once
# 372-393 ms / 0.53-0.55 s. One worker gives the shortest pause; more than 2 miss the 50 ms target and gain little
# time (libvirtd is the bottleneck). docs/performance.md ("Overlay fence") has the figures of `make bench`.
OVERLAY_WORKERS = 1
# How many VMs' overlay files are made at once (qemu-img processes, before any VM is quiesced: wall time only).
PRECREATE_WORKERS = 4


def plan_vms(sc: SharedConnection, vm_uuids: List[str], run_id: str) -> List[Dict[str, Any]]:
    """The fence of every VM (``_overlay.plan``: overlay with its overlays, or direct with the reason)."""
    return [plan(inspect(sc, vm_uuid), run_id) for vm_uuid in vm_uuids]


def fence_overlays(sc: SharedConnection, state_dir: str, journal_id: str, plans: List[Dict[str, Any]], run_id: str,
                   mode: str = "suspend", agent_timeout: int = 10, precreated: bool = False,
                   workers: Optional[int] = None, before_quiesce: Optional[Callable[[], Any]] = None
                   ) -> List[Dict[str, Any]]:
    """Journal the plans ahead, then quiesce → overlay → release every overlay-fenced VM of PLANS, WORKERS VMs at a
    time (default OVERLAY_WORKERS; each worker on its own connection slot), then record what exists. Returns the
    outcomes of ``_overlay.overlay_vm`` (same order as the overlay-fenced plans).

    PRECREATED: make every VM's overlay files first (``_overlay.precreate``, after the journal names them, before any
    VM is quiesced); a VM whose files cannot be made (no qemu-img, a datastore root may not write to) gets its
    overlays made by libvirt inside the pause instead, and says so in its ``detail``. BEFORE_QUIESCE() is called
    once the files are made, before the first VM is quiesced."""
    write_plans(state_dir, journal_id, plans)
    todo = [p for p in plans if p["fence"] == "overlay"]
    slots = max(1, min(workers or OVERLAY_WORKERS, len(todo)))
    sc.set_slots(slots)
    made: Dict[str, bool] = {}
    notes: Dict[str, str] = {}

    def make(vm_plan: Dict[str, Any]) -> Dict[str, Any]:
        try:
            precreate(sc, vm_plan["uuid"], vm_plan["overlays"])
            made[vm_plan["uuid"]] = True
        except Exception as err:
            notes[vm_plan["uuid"]] = "overlay files not precreated (%s); libvirt made them" % err
        return {}
    if precreated:  # no VM is quiesced yet: the files of several VMs are made side by side
        sc.set_slots(PRECREATE_WORKERS)
        pooled([p for p in todo if p["overlays"]], make, PRECREATE_WORKERS, sc)
    if before_quiesce is not None:
        before_quiesce()

    def one(vm_plan: Dict[str, Any]) -> Dict[str, Any]:
        try:  # the domain looked up on this worker's connection before its pause starts
            sc.call(lambda conn, _a: sc.domain(conn, vm_plan["uuid"]))
        except Exception:
            pass  # overlay_vm's own calls report the error
        with host_switch_lock(state_dir):
            out = overlay_vm(sc, vm_plan, run_id, mode, agent_timeout, made.get(vm_plan["uuid"], False))
        note = notes.get(vm_plan["uuid"])
        if note:
            out["detail"] = "; ".join(x for x in (out.get("detail"), note) if x)
        return out
    outcomes = pooled(todo, one, slots, sc)
    for vm_plan, o in zip(todo, outcomes):
        o.setdefault("uuid", vm_plan["uuid"])
        o.setdefault("name", vm_plan.get("name"))
    record_overlays(state_dir, journal_id, outcomes)
    return outcomes


def commit_overlays(sc: SharedConnection, state_dir: str, journal_id: str, plans: List[Dict[str, Any]],
                    outcomes: List[Dict[str, Any]], timeout: float = COMMIT_TIMEOUT,
                    attempts: int = COMMIT_ATTEMPTS, workers: Optional[int] = None) -> List[Dict[str, Any]]:
    """Commit the overlays of every VM whose overlay was created, each attempt journalled: WORKERS VMs at a time
    (each worker on its own connection slot), or every VM at once when WORKERS is None.

    Returns [{uuid, name, disks: [commit_disk result with attempts]}]."""
    created = {o["uuid"] for o in outcomes if o.get("created")}
    todo = [p for p in plans if p["fence"] == "overlay" and p["uuid"] in created]

    def one(vm_plan: Dict[str, Any]) -> Dict[str, Any]:
        def journal_it(res: Dict[str, Any]) -> None:
            record_commit(state_dir, journal_id, vm_plan["uuid"], res)
        disks = commit_vm(sc, vm_plan["uuid"], vm_plan["overlays"], timeout, attempts, on_attempt=journal_it)
        return {"uuid": vm_plan["uuid"], "name": vm_plan.get("name"), "disks": disks}
    if workers:
        sc.set_slots(workers)
        return pooled(todo, one, workers, sc)
    return parallel(todo, one)


def pooled(items: List[Any], fn: Callable[[Any], Dict[str, Any]], workers: int,
           sc: Optional[SharedConnection] = None) -> List[Dict[str, Any]]:
    """fn on every item, at most WORKERS at a time (worker K bound to connection slot K of SC); results in item
    order. A worker that raises gives {error, t_done} for its item."""
    results: List[Optional[Dict[str, Any]]] = [None] * len(items)
    lock = threading.Lock()
    queue = list(range(len(items)))

    def work(slot: int) -> None:
        if sc is not None:
            sc.bind(slot)
        while True:
            with lock:
                if not queue:
                    return
                idx = queue.pop(0)
            try:
                results[idx] = fn(items[idx])
            except BaseException as err:  # a worker must always report
                results[idx] = {"error": str(err), "t_done": time.monotonic()}
    threads = [threading.Thread(target=work, args=(k,), name="kvmsnap-overlay-%d" % k, daemon=True)
               for k in range(max(1, min(workers, len(items))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r if r is not None else {"error": "no result", "t_done": time.monotonic()} for r in results]
