# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How many boot copies vm_verify runs at once: the requested bound, cut down to the host's available memory.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

OVERHEAD_MIB = 64  # QEMU's own memory per copy beyond the guest's (at least)


def copy_cost_mib(memory_mib: int) -> int:
    """Host memory one copy of a guest with MEMORY_MIB needs: the guest's memory plus QEMU's overhead."""
    return int(memory_mib) + max(OVERHEAD_MIB, int(memory_mib) // 16)


def read_available_mib(meminfo: str = "/proc/meminfo") -> Optional[int]:
    """MemAvailable of the host in MiB (None when the kernel does not say)."""
    try:
        with open(meminfo) as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def plan_parallel(requested: int, memories_mib: List[int], available_mib: Optional[int],
                  reserve_mib: int) -> Dict[str, Any]:
    """{requested, chosen, available_mib, reserve_mib, budget_mib, largest_copy_mib, too_big: [index], reason}.

    CHOSEN is at most REQUESTED and the number of copies, and so many copies of the largest guest that fits fit
    into the available memory minus RESERVE_MIB at once. A copy larger than that budget never starts (TOO_BIG);
    with the memory unknown the requested bound stands."""
    requested = max(1, int(requested))
    costs = [copy_cost_mib(m) for m in memories_mib]
    out: Dict[str, Any] = {"requested": requested, "available_mib": available_mib, "reserve_mib": reserve_mib,
                           "budget_mib": None, "largest_copy_mib": max(costs) if costs else 0, "too_big": []}
    if not costs:
        out.update(chosen=0, reason="no VM to copy")
        return out
    if available_mib is None:
        out.update(chosen=min(requested, len(costs)),
                   reason="the host's available memory is unknown: kvmsnap_verify_parallel alone bounds the copies")
        return out
    budget = max(0, int(available_mib) - int(reserve_mib))
    out["budget_mib"] = budget
    out["too_big"] = [i for i, c in enumerate(costs) if c > budget]
    fitting = [c for i, c in enumerate(costs) if i not in out["too_big"]]
    if not fitting:
        out.update(chosen=0, reason="no copy fits into %d MiB (available %d MiB - reserve %d MiB)"
                   % (budget, available_mib, reserve_mib))
        return out
    by_memory = max(1, budget // max(fitting))
    chosen = min(requested, len(fitting), by_memory)
    out["chosen"] = chosen
    if chosen < min(requested, len(fitting)):
        out["reason"] = ("memory: %d copies of up to %d MiB fit into %d MiB (available %d MiB - reserve %d MiB)"
                         % (by_memory, max(fitting), budget, available_mib, reserve_mib))
    else:
        out["reason"] = "kvmsnap_verify_parallel=%d%s" % (
            requested, " (%d VM(s))" % len(fitting) if len(fitting) < requested else "")
    return out
