# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure rules of the fence: consistency levels, what a run does to a VM in a given state, the plan
and the per-VM outcome a module returns. No I/O.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

# strongest first; "offline" = the VM was shut off (its disks are idle and clean)
CONSISTENCY_LEVELS = ("offline", "application", "filesystem", "suspended", "crash")


def wall_time(mono: float) -> float:
    """Epoch seconds of a time.monotonic() reading of this process (journals are read by other processes)."""
    return time.time() - (time.monotonic() - mono)


def elapsed_ms(t0: float, t1: float) -> float:
    return round((t1 - t0) * 1000.0, 3)


def consistency_for(action: str, prior_state: str, frozen_count: Optional[int] = None) -> str:
    """The consistency level a VM's disks have while the run holds it (never more than reached)."""
    if prior_state == "shutoff":
        return "offline"
    if action == "frozen":
        # The agent does not tell whether fsfreeze hooks quiesced applications: claim filesystem only.
        return "filesystem" if (frozen_count is None or frozen_count > 0) else "crash"
    if action == "suspended":
        return "suspended"
    return "crash"


def weakest(levels: List[str]) -> Optional[str]:
    """The weakest of several consistency levels (e.g. of all VMs on one snapshot)."""
    known = [lvl for lvl in levels if lvl in CONSISTENCY_LEVELS]
    if not known:
        return None
    return max(known, key=CONSISTENCY_LEVELS.index)


def planned_action(mode: str, state: str) -> str:
    """What the run will do to a VM in libvirt state STATE (write-ahead journal entry)."""
    if state != "running" or mode == "none":
        return "none"
    return {"suspend": "suspended", "freeze": "frozen", "auto": "auto"}[mode]


def skip_reason(mode: str, state: str, paused_reason: Optional[str] = None) -> Optional[str]:
    if mode == "none":
        return "mode none: crash-consistent, not paused"
    if state == "paused":
        return "paused before this run (reason: %s); left untouched and not resumed" % (paused_reason or "unknown")
    if state == "shutoff":
        return "shut off; nothing to quiesce"
    if state != "running":
        return "in state %s; not quiesced" % state
    return None


def is_test_uri(uri: Optional[str]) -> bool:
    return bool(uri) and str(uri).startswith("test:")


def plan(vms: List[Dict[str, Any]], mode: str) -> List[Dict[str, Any]]:
    return [{"name": vm["name"], "uuid": vm["uuid"], "prior_state": vm["state"],
             "action": planned_action(mode, vm["state"]),
             "consistency": None if planned_action(mode, vm["state"]) != "none" else consistency_for("none", vm["state"]),
             "detail": skip_reason(mode, vm["state"], vm.get("paused_reason"))} for vm in vms]


def public_outcome(o: Dict[str, Any]) -> Dict[str, Any]:
    """The per-VM entry a module returns (no monotonic timestamps)."""
    keys = ("name", "uuid", "prior_state", "action", "consistency", "detail", "error", "quiesce_ms",
            "released", "release_result", "release_error", "pause_ms", "frozen_filesystems")
    return {k: o.get(k) for k in keys if k in o}
