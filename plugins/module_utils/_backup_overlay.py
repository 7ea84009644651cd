# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vm_backup's choice of fence per VM (``direct``, ``overlay``, ``auto``), the overlay fence inside a backup run
(overlay before the snapshot, commit after it) and the trust rule of the overlay window (docs/how-it-works.md,
docs/dev/overlay.md).

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils._fence_errors import FenceError
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_rules import is_test_uri
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_run import commit_overlays, fence_overlays, plan_vms

FENCES = ["direct", "overlay", "auto"]
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

# The run's watchdog (a new Python process) starts just before the overlays: its start-up takes the CPU libvirtd needs
# for the first VMs' overlays. On the 2-core lab the first VM's pause was 50-72 ms against ~20 ms for the next ones;
# after waiting for the watchdog to sleep, 18-30 ms for all. The wait is bounded: WATCHDOG_SETTLE seconds at most.
WATCHDOG_SETTLE = 0.5
_SETTLE_POLL = 0.005
_SETTLE_QUIET = 3  # polls in a row that find the process asleep

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


def settle(pid: Optional[int], limit: float = WATCHDOG_SETTLE) -> float:
    """Wait until process PID is asleep (state S in /proc/PID/stat on _SETTLE_QUIET polls in a row), it ended, or
    LIMIT seconds passed; returns the seconds waited. No /proc (not Linux) or no PID: no wait."""
    t0 = time.monotonic()
    if not pid:
        return 0.0
    quiet = 0
    while time.monotonic() - t0 < limit:
        try:
            with open("/proc/%d/stat" % int(pid)) as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError, ValueError):
            break
        if state in ("Z", "X"):
            break
        quiet = quiet + 1 if state == "S" else 0
        if quiet >= _SETTLE_QUIET:
            break
        time.sleep(_SETTLE_POLL)
    return time.monotonic() - t0


def window_faults(create_times: List[Optional[int]], windows: List[Dict[str, Any]],
                  taken_at: Optional[float] = None) -> List[str]:
    """The trust rule of the overlay fence (pure): the snapshot captured every overlay VM's base images only if it
    was taken inside each VM's window ``overlay_at`` .. ``commit_started_at`` (epoch seconds).

    CREATE_TIMES: the snapshots' create times as the controller reports them (whole epoch seconds; None when not read
    back). TAKEN_AT: when this host saw the take end (epoch), None when it never ended. WINDOWS: [{name, overlay_at,
    commit_started_at}] (a VM with no overlay has no window). Returns one reason per fault; empty when the
    snapshot lies inside every window.

    The controller's time has one-second resolution: a create time in the overlay's second counts as inside. The
    host's own order (the take ended before the commit started) is checked as well, so a controller clock ahead of
    the host's cannot make a snapshot taken after a commit look good.
    """
    faults = []
    for w in windows:
        start, end = w.get("overlay_at"), w.get("commit_started_at")
        name = w.get("name") or w.get("uuid")
        if start is None:
            continue
        if taken_at is None:
            faults.append("VM %s: the snapshot's take never ended on this host inside its overlay window" % name)
            continue
        if end is not None and taken_at > end:
            faults.append("VM %s: the snapshot ended at %.3f, after its commit started at %.3f" % (name, taken_at, end))
        for ct in create_times:
            if ct is None:
                continue
            if ct < math.floor(start):
                faults.append("VM %s: snapshot create time %d is before its overlay point %.3f" % (name, ct, start))
            elif end is not None and ct > math.ceil(end):
                faults.append("VM %s: snapshot create time %d is after its commit started at %.3f" % (name, ct, end))
    return faults


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

    def plan(self, vms: List[Dict[str, Any]]) -> None:
        """Choose every VM's fence (raises FenceError for fence=overlay when a running VM cannot take it)."""
        plans = None
        if self.choice != "direct" and not is_test_uri(self.fence.uri):
            plans = plan_vms(self.fence.sc, [vm["uuid"] for vm in vms], self.run_id)
        self.plans = choose(self.choice, vms, plans, self.fence.uri)

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

    def windows(self) -> List[Dict[str, Any]]:
        return [{"uuid": o["uuid"], "name": o.get("name"), "overlay_at": o.get("overlay_at"),
                 "commit_started_at": self.commit_started_at}
                for o in self.outcomes if o.get("created") and not o.get("fallback")]

    def commit(self) -> List[str]:
        """Commit every created overlay (each disk up to COMMIT_ATTEMPTS times, journalled). Once only. Returns the
        errors (a failed commit leaves the VM on its overlay, pending in the journal for the watchdog/next run)."""
        if self.committed or not any(o.get("created") for o in self.outcomes):
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
