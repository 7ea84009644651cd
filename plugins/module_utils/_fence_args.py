# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fence options of vm_quiesce and vm_backup (documented by the kvmsnap.core.fence doc fragment).

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import copy
from typing import Any, Dict

from ansible_collections.kvmsnap.core.plugins.module_utils._defaults import (
    DEFAULT_AGENT_TIMEOUT,
    DEFAULT_DEADLINE,
    DEFAULT_STATE_DIR,
)

FENCE_MODES = ["suspend", "freeze", "auto", "none"]
FENCES = ["direct", "overlay", "auto"]  # how the disks are held still: vm_backup/vm_quiesce fence, kvmsnap_fence

FENCE_ARGS: Dict[str, Dict[str, Any]] = {
    "mode": {"type": "str", "choices": FENCE_MODES, "default": "auto"},
    "deadline": {"type": "int", "default": DEFAULT_DEADLINE},
    "state_dir": {"type": "path", "default": DEFAULT_STATE_DIR},
    "agent_timeout": {"type": "int", "default": DEFAULT_AGENT_TIMEOUT},
    "allow_crash_consistent": {"type": "bool", "default": False},
}

# the fence options with an allowed range (_defaults.LIMITS)
FENCE_LIMITED = ("deadline", "agent_timeout")


def fence_argument_spec(**extra: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The fence options plus EXTRA (deep copies, never shared)."""
    spec = copy.deepcopy(FENCE_ARGS)
    spec.update(copy.deepcopy(extra))
    return spec
