# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The trust rule of the overlay fence (pure, standard library only: vm_backup on the KVM host and the backup
role's report on the controller both apply it; docs/dev/overlay.md).

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional


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
