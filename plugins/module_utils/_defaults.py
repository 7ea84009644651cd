# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The defaults and allowed ranges of the options several modules share, each written once.

The modules' DOCUMENTATION (YAML) cannot import these: tests/unit/test_module_options.py checks that
every module documents the same default as its argument spec, and the range of every option in LIMITS.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Tuple

# on the KVM host: fence journals, VM locks, the watchdog script, the local manifest catalog
DEFAULT_STATE_DIR = "/var/lib/kvmsnap"
# seconds the VMs may stay quiesced before the watchdog releases them (the roles' kvmsnap_quiesce_deadline)
DEFAULT_DEADLINE = 120
# seconds after the deadline in which a snapshot may still be confirmed good
DEFAULT_CONFIRM_GRACE = 300
# seconds one guest-agent command (ping, freeze, thaw) may take
DEFAULT_AGENT_TIMEOUT = 10
# retries of a transient libvirt or ONTAP failure (Snap Creator KVM_CMD_RETRY_COUNT)
DEFAULT_RETRIES = 3
# seconds one ONTAP API call or job may take
DEFAULT_ONTAP_TIMEOUT = 60

# option -> (lowest, highest) allowed value, the same in every module that has the option
LIMITS: Dict[str, Tuple[int, int]] = {
    # a fence of up to a day; with state=locked the expiry of a run's VM locks, which the roles size to hold their
    # whole run (fence or shutdown plus ONTAP timeouts: up to about two days at the roles' own limits)
    "deadline": (1, 3 * 86400),
    "confirm_grace": (1, 86400),
    "agent_timeout": (1, 600),
    "retries": (0, 10),
    "timeout": (1, 3600),
    "shutdown_timeout": (1, 3600),
    "verify_timeout": (1, 86400),
    # vm_verify: boot copies of backed-up VMs
    "boot_timeout": (1, 86400),
    "command_timeout": (1, 86400),
    "parallel": (1, 64),
    "memory_reserve": (0, 1048576),
    "output_limit": (0, 1048576),
}


def out_of_range(params: Dict[str, Any], names: Iterable[str]) -> Optional[str]:
    """The message for the first option of NAMES whose value lies outside its LIMITS, or None."""
    for name in names:
        value = params.get(name)
        low, high = LIMITS[name]
        if value is not None and not low <= value <= high:
            return "%s: %r is out of range; expected %d-%d." % (name, value, low, high)
    return None
