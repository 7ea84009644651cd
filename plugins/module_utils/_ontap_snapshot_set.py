# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One consistent snapshot over many volumes, in phases, so that a backup fence holds the VMs for the
point in time and nothing else (docs/how-it-works.md, "The fence's critical path"):

- prepare (before the quiesce): volume look-ups, the method, a temporary consistency group where one is needed;
- take (inside the fence): exactly the call(s) that make the point in time: a volume snapshot, a CG snapshot,
  or the start of a two-phase CG snapshot (ZAPI cg-start, REST action=start);
- commit (once the VMs are released): the second phase of a two-phase snapshot;
- finish (after the release): snapshot comments the first phase could not carry, removal of the temporary
  CG, read-back of uuid and create time.

A failure after the take removes the snapshots it made (by name and volume, never another's) and raises; the VMs
already run again then, so nothing is lost.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError

# How long ONTAP may hold its own I/O fence between the two phases (REST action_timeout, seconds; 5-120).
# The commit follows the release of the VMs (a fence commits 5 s after the take at the latest).
TWO_PHASE_TIMEOUT = 20
# ZAPI cg-start's named timeout of the same meaning (urgent 2 s, medium 7 s, relaxed 20 s)
ZAPI_CG_TIMEOUT = "relaxed"


@dataclass
class SnapshotSetPlan:
    """What prepare decided and what the later phases need; transport data in `cg`, `started`, `zapi`."""

    volumes: List[Tuple[str, str]]
    name: str
    comment: Optional[str]
    label: Optional[str]
    method: str = ""  # single | cg | cg_temporary | cg_start_commit | multicreate
    two_phase: bool = False  # the take only starts the snapshot; commit ends it
    cg: Optional[Dict[str, Any]] = None  # REST: the consistency group snapshotted
    temporary_cg: bool = False  # REST: made for this snapshot; removed by finish/abort
    started: List[Tuple[str, str]] = field(default_factory=list)  # ZAPI: (svm, cg-id) of each cg-start
    zapi: Any = None  # REST: the ZAPI client of the cg-start/cg-commit fallback
    set_comment: Optional[Callable[..., None]] = None  # writes comments the first phase could not carry
    comments_pending: bool = False
    taken: bool = False
    committed: bool = False
    finished: bool = False
    warnings: List[str] = field(default_factory=list)

    @property
    def what(self) -> str:
        return "create snapshot %s on %s" % (self.name, ", ".join("%s:%s" % sv for sv in self.volumes))


def commit_failed(plan: SnapshotSetPlan, exc: OntapError) -> OntapError:
    exc.message = "the point in time of snapshot %s was taken, but its commit failed: %s" % (plan.name, exc.message)
    return exc
