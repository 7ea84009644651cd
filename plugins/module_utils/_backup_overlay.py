# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vm_backup's choice of fence per VM (``direct``, ``overlay``, ``auto``), the overlay fence inside a backup run
(overlay before the snapshot, commit after it) and the trust rule of the overlay window (docs/how-it-works.md,
docs/dev/overlay.md).

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal, _overlay_recovery
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_args import FENCES
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_errors import FenceError
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_rules import is_test_uri, public_outcome
from ansible_collections.kvmsnap.core.plugins.module_utils._host_turns import Preparing, settle
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_run import commit_overlays, fence_overlays, plan_vms

DEFAULT_FENCE = "auto"

# vm_backup makes every VM's overlay files (qemu-img) before it quiesces the first VM, so libvirt only opens them
# inside the pause: longest pause of 32 minimal VMs overlaid one at a time on the 2-core lab 18-25 ms precreated
# against 24-33 ms when libvirt creates them; making the files took ~40 ms per VM under load (four VMs at a time,
# outside any pause, partly while the watchdog starts; docs/performance.md, "Overlay fence").
# Where a file cannot be made (a datastore root may not write to) libvirt makes it, as before.
OVERLAY_PRECREATED = True

# The overlays of a run are committed COMMIT_WORKERS VMs at a time, each worker on its own connection (all VMs at
# once on one connection before): 32 minimal VMs committed in 0.82-0.96 s against 1.06-1.21 s (2 rounds, 2-core lab
# under load from other test runs; 1 at a time: 1.74-1.86 s). The commit runs while the VMs run: no pause.
COMMIT_WORKERS = 4

TEST_DRIVER_REASON = "the libvirt test driver cannot make external snapshots"


def _direct(vm: Dict[str, Any], reason: str) -> Dict[str, Any]:
    return {"uuid": vm["uuid"], "name": vm.get("name"), "fence": "direct", "reason": reason, "overlays": [],
            "skipped": []}


def choose(fence: str, vms: List[Dict[str, Any]], plans: Optional[List[Dict[str, Any]]],
           uri: Optional[str]) -> List[Dict[str, Any]]:
    """The fence each VM of VMS gets (pure): a plan per VM (``_overlay.plan``'s shape) with ``fence`` and ``reason``.

    FENCE ``direct``: every VM direct. ``auto``: the overlay plan of PLANS where it allows the overlay fence, else
    direct with the plan's reason; on libvirt's test driver every VM is direct. ``overlay``: like ``auto``, but a
    running VM that cannot take the overlay fence fails the run before anything is touched (VMs not running take
    no fence at all)."""
    if fence not in FENCES:
        raise FenceError("fence: %r is not one of %s" % (fence, ", ".join(FENCES)))
    if fence == "direct":
        return [_direct(vm, "fence=direct") for vm in vms]
    if is_test_uri(uri) or plans is None:
        if fence == "overlay" and any(vm.get("state") == "running" for vm in vms):
            raise FenceError("fence=overlay: %s (%s); nothing was quiesced. Use fence=auto or direct."
                             % (TEST_DRIVER_REASON, uri))
        return [_direct(vm, TEST_DRIVER_REASON) for vm in vms]
    by_uuid = {p["uuid"]: p for p in plans}
    out, refused = [], []
    for vm in vms:
        p = by_uuid.get(vm["uuid"])
        if p is None:
            out.append(_direct(vm, "no overlay plan"))
            continue
        if fence == "overlay" and p["fence"] != "overlay" and vm.get("state") == "running":
            refused.append("%s (%s): %s" % (vm.get("name"), vm["uuid"], p.get("reason")))
        out.append(p)
    if refused:
        raise FenceError("fence=overlay: %d VM(s) cannot take the overlay fence: %s; nothing was quiesced. Use "
                         "fence=auto to send them to the direct fence." % (len(refused), "; ".join(refused)))
    return out


class OverlayFence:
    """The overlay VMs of one backup run: plans, overlay (quiesce → overlays → release), commit, report."""

    def __init__(self, fence: Any, run_id: str, choice: str, mode: str) -> None:
        self.fence = fence
        self.run_id = run_id
        self.choice = choice
        self.mode = mode
        self.plans: List[Dict[str, Any]] = []
        self.outcomes: List[Dict[str, Any]] = []
        self.commits: List[Dict[str, Any]] = []
        self.commit_started_at: Optional[float] = None
        self.watchdog_settle_ms = 0.0
        self.committed = False
        self._background: Optional[threading.Thread] = None
        self._background_errors: List[str] = []
        self.preparing = Preparing()

    def begin_preparing(self) -> None:
        """From here until this run's first switch, other runs' overlay switches on this host wait (bounded) for it
        (``_host_turns``): call once the state dir exists. Nothing to wait for with the direct fence or check mode.
        Ended by ``plan`` (no overlay VM), before the first switch, or by the caller's ``preparing.end()`` in its
        ``finally``."""
        if self.choice != "direct" and not self.fence.check_mode and not is_test_uri(self.fence.uri):
            self.preparing.begin(self.fence.state_dir)

    def plan(self, vms: List[Dict[str, Any]]) -> None:
        """Choose every VM's fence (raises FenceError for fence=overlay when a running VM cannot take it)."""
        plans = None
        if self.choice != "direct" and not is_test_uri(self.fence.uri):
            plans = plan_vms(self.fence.sc, [vm["uuid"] for vm in vms], self.run_id)
        self.plans = choose(self.choice, vms, plans, self.fence.uri)
        if not self.overlay_uuids():
            self.preparing.end()  # no switch of ours to prepare for

    def by_uuid(self) -> Dict[str, Dict[str, Any]]:
        return {p["uuid"]: p for p in self.plans}

    def overlay_uuids(self) -> List[str]:
        return [p["uuid"] for p in self.plans if p["fence"] == "overlay"]

    def run(self) -> List[Dict[str, Any]]:
        """Quiesce → overlays → release every overlay VM (journalled). Returns the uuids that fall back to the
        direct fence (fence=auto: the overlay failed, the VM was released); with fence=overlay a failure is kept in
        its outcome's error."""
        if not self.overlay_uuids():
            return []
        owners = (getattr(self.fence, "journal", None) or {}).get("owners") or []
        watchdog = next((o.get("pid") for o in owners if o.get("role") == "watchdog"), None)

        def wait_for_watchdog() -> None:  # the files are made meanwhile
            self.watchdog_settle_ms = 1000 * settle(watchdog)
            self.preparing.end()  # prepared: the switches may come
        self.outcomes = fence_overlays(self.fence.sc, self.fence.state_dir, self.fence.journal_id, self.plans,
                                       self.run_id, self.mode, self.fence.agent_timeout, OVERLAY_PRECREATED,
                                       before_quiesce=wait_for_watchdog)
        back = []
        plans = self.by_uuid()
        for o in self.outcomes:
            if o.get("error") and not o.get("created") and not o.get("release_error") and self.choice == "auto":
                plans[o["uuid"]].update(fence="direct", reason="the overlay failed (%s); direct fence" % o["error"])
                o["fallback"] = True
                back.append(o["uuid"])
        return back

    def failed(self) -> List[Dict[str, Any]]:
        return [o for o in self.outcomes if o.get("error") and not o.get("fallback")]

    def fence_outcomes(self) -> List[Dict[str, Any]]:
        """The overlay VMs' outcomes as the Fence's journal records them (their release was done by the overlay)."""
        out = []
        for o in self.outcomes:
            if o.get("fallback"):
                continue
            out.append({"uuid": o["uuid"], "name": o.get("name"), "action": o["action"],
                        "consistency": o.get("consistency"), "released": not o.get("release_error"),
                        "release_error": o.get("release_error"), "release_result": o.get("release_result"),
                        "released_how": "release", "released_by": "overlay fence of run %s" % self.run_id})
        return out

    def _created(self) -> List[Dict[str, Any]]:
        """The outcomes of the VMs running on overlays of this run (until the commit)."""
        return [o for o in self.outcomes if o.get("created") and not o.get("fallback")]

    def created_uuids(self) -> List[str]:
        return [o["uuid"] for o in self._created()]

    def windows(self) -> List[Dict[str, Any]]:
        return [{"uuid": o["uuid"], "name": o.get("name"), "overlay_at": o.get("overlay_at"),
                 "commit_started_at": self.commit_started_at} for o in self._created()]

    def start_commit(self, after: threading.Event, wait: float) -> None:
        """Commit in a background thread once AFTER is set (the snapshot's point in time exists and its calls are
        done), or WAIT seconds at the latest, while the caller finishes the snapshot; ``commit`` joins it."""
        if self.committed or self._background is not None or not self._created():
            return

        def work() -> None:
            after.wait(wait)
            self._background_errors = self._commit()
        self._background = threading.Thread(target=work, name="kvmsnap-overlay-commit", daemon=True)
        self._background.start()

    def commit(self) -> List[str]:
        """Commit every created overlay (each disk up to COMMIT_ATTEMPTS times, journalled), or wait for the
        background commit (``start_commit``). Once only. Returns the errors (a failed commit leaves the VM on its
        overlay, pending in the journal for the watchdog/next run)."""
        if self._background is not None:
            self._background.join()
            self._background = None
            return self._background_errors
        return self._commit()

    def _commit(self) -> List[str]:
        if self.committed or not self._created():
            return []
        self.committed = True
        self.commit_started_at = time.time()
        try:
            self.commits = commit_overlays(self.fence.sc, self.fence.state_dir, self.fence.journal_id, self.plans,
                                           self.outcomes, workers=COMMIT_WORKERS)
        except Exception as err:  # the journal keeps every overlay pending: the watchdog or the next run commits
            return ["commit of the overlays failed: %s; they stay pending for the watchdog and the next run" % err]
        errors = []
        for c in self.commits:
            for d in c["disks"]:
                if d.get("error") or d.get("result") != "committed" or d.get("remove_error"):
                    errors.append("VM %s disk %s: overlay %s not committed%s (%s); it stays pending for the "
                                  "watchdog and the next run" % (
                                      c.get("name"), d.get("target"), d.get("overlay"),
                                      " or not removed" if d.get("result") == "committed" else "",
                                      d.get("error") or d.get("remove_error")))
        return errors

    def report(self, entry: Dict[str, Any]) -> Dict[str, Any]:
        """Add the fence, its reason and (overlay VMs) the window and commits to a VM's report entry."""
        p = self.by_uuid().get(entry["uuid"])
        if p is None:
            return entry
        entry["fence"] = p["fence"]
        entry["fence_reason"] = p.get("reason")
        if p["fence"] != "overlay":
            return entry
        o = next((x for x in self.outcomes if x["uuid"] == entry["uuid"]), {})
        entry.update(overlay_at=o.get("overlay_at"), commit_started_at=self.commit_started_at,
                     overlay_ms=o.get("overlay_ms"))
        c = next((x for x in self.commits if x["uuid"] == entry["uuid"]), None)
        entry["overlays"] = [{"target": d.get("target"), "overlay": d.get("overlay"), "result": d.get("result"),
                              "removed": d.get("removed"), "commit_ms": d.get("commit_ms"),
                              "attempts": d.get("attempts"), "error": d.get("error") or d.get("remove_error")}
                             for d in (c or {}).get("disks", [])]
        return entry

    def vm_report(self, outcomes: List[Dict[str, Any]], in_window: Optional[bool] = None) -> List[Dict[str, Any]]:
        """One entry per VM: the direct VMs' OUTCOMES and the overlay VMs', each with its fence and why
        (IN_WINDOW False: the overlay VMs are crash-consistent too)."""
        direct = [self.report(public_outcome(o)) for o in outcomes]
        over = self.public()
        if in_window is False:
            for v in over:
                if v.get("consistency") not in (None, "offline"):
                    v["consistency"] = "crash"
        return direct + over

    def public(self) -> List[Dict[str, Any]]:
        """The overlay VMs' report entries (the direct ones come from the Fence's outcomes)."""
        out = []
        for o in self.outcomes:
            if o.get("fallback"):
                continue
            entry = {"name": o.get("name"), "uuid": o["uuid"], "prior_state": "running", "action": o["action"],
                     "consistency": o.get("consistency"), "detail": o.get("detail"), "error": o.get("error"),
                     "quiesce_ms": o.get("quiesce_ms"), "released": not o.get("release_error"),
                     "release_result": o.get("release_result"), "release_error": o.get("release_error"),
                     "pause_ms": o.get("pause_ms") or 0.0}
            if o.get("frozen_filesystems") is not None:
                entry["frozen_filesystems"] = o["frozen_filesystems"]
            out.append(self.report(entry))
        return out


def _recover(fence: Any, failure: str, **kwargs: Any) -> List[Dict[str, Any]]:
    """``_overlay_recovery.recover`` on FENCE's connection and state dir; its leftovers. Its warnings, or FAILURE and
    the error when it fails, go to the fence's warnings: a recovery never fails the run (the journal keeps every
    overlay pending for the watchdog and the next run)."""
    try:
        rep = _overlay_recovery.recover(fence.state_dir, fence.sc, **kwargs)
    except Exception as err:
        fence.warnings.append(failure % err)
        return []
    fence.warnings.extend(rep["warnings"])
    return rep["leftovers"]


def recover_leftovers(fence: Any, vms: List[Dict[str, Any]], run_id: str,
                      check_mode: bool) -> List[Dict[str, Any]]:
    """Before a fence: commit the overlays dead runs left on VMS (docs/dev/overlay.md); the ``recovered`` entries."""
    if is_test_uri(fence.uri):
        return []
    # a failure never blocks the backup; the VM is sent to the direct fence by its plan
    leftovers = _recover(fence, "recovery of leftover overlays failed: %s; the next run tries again",
                         exclude_run=run_id, check_mode=check_mode, vm_uuids=[vm["uuid"] for vm in vms])
    return [{"overlay": e["overlay"], "uuid": e["uuid"], "name": e.get("name"), "target": e["target"],
             "run_id": e.get("run"), "result": e.get("result"), "error": e.get("error"), "kind": "overlay"}
            for e in leftovers]


def own_overlays(state_dir: str, journals: List[Dict[str, Any]]) -> None:
    """This process commits the overlays of JOURNALS (vm_quiesce state=released): recorded as a module owner first,
    so neither the watchdog nor another run's recovery commits them at the same time (``run_owns_overlays``)."""
    for j in journals:
        if _journal.holds_overlays(j):
            _journal.update(state_dir, j["run_id"], lambda jj: jj.setdefault("owners", []).append(_journal.owner()))


def commit_run(fence: Any, run_id: str, vm_uuids: Optional[List[str]], check_mode: bool) -> List[Dict[str, Any]]:
    """Commit the overlays run RUN_ID left on this host (its own commit, after the controller's snapshot); the
    recovery's entries, one per overlay. A failure is a warning: the VM runs on its overlay, the journal keeps it
    pending for the watchdog and the next run."""
    return _recover(fence, "commit of the overlays of run %s failed: %%s; they stay pending for the watchdog and the "
                    "next run" % run_id, run=run_id, vm_uuids=vm_uuids, check_mode=check_mode)


def overlay_record(vm: Dict[str, Any]) -> Dict[str, Any]:
    """What a journal's VM entry says of its overlay fence: {fence, fence_reason, overlay_at, commit_started_at,
    overlays} (``commit_started_at`` None while no commit began); {} for a VM of the direct fence."""
    if vm.get("fence") != "overlay":
        return {}
    ovls = vm.get("overlays") or []

    def first(key: str) -> Optional[float]:
        values = [o[key] for o in ovls if o.get(key) is not None]
        return min(values) if values else None
    return {"fence": "overlay", "fence_reason": vm.get("fence_reason"), "overlay_at": first("overlay_at"),
            "commit_started_at": first("commit_started_at"),
            "overlays": [{"target": o.get("target"), "overlay": o.get("overlay"), "state": o.get("state"),
                          "removed": o.get("removed"), "attempts": o.get("attempts"), "error": o.get("error")}
                         for o in ovls]}
