# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Fence options of vm_quiesce and vm_backup (plugins/module_utils/_fence_args.py)."""

    DOCUMENTATION = r"""
options:
  mode:
    description:
      - V(suspend) pauses the VMs (virDomainSuspend); consistency C(suspended).
      - V(freeze) freezes the guest filesystems through the guest agent (bounded by O(agent_timeout));
        consistency C(filesystem) (C(crash) if the agent froze nothing).
      - V(auto) freezes where the guest agent answers a guest-ping, and suspends the others (also when the freeze
        fails).
      - V(none) does not pause anything; consistency C(crash).
    type: str
    choices: [suspend, freeze, auto, none]
    default: auto
  deadline:
    description:
      - Seconds the VMs may stay quiesced (1-259200). At the deadline the run's watchdog on the host releases them
        by itself if nobody released them, whatever state the run is in.
      - For vm_quiesce with C(state=locked), when the run's VM locks expire if the run dies without releasing them.
    type: int
    default: 120
  state_dir:
    description:
      - Directory on the KVM host for the fence journals, the VM locks and the watchdog script (created with mode
        0700).
    type: path
    default: /var/lib/kvmsnap
  agent_timeout:
    description:
      - Seconds a guest-agent command (ping, freeze, thaw) may take before it counts as failed (1-600).
    type: int
    default: 10
  allow_crash_consistent:
    description:
      - When quiescing a VM fails, go on with that VM running, recorded as crash-consistent (C(crash)), instead of
        failing the task.
    type: bool
    default: false
notes:
  - Run it on the KVM host (the watchdog runs there). With a C(test:///) O(uri) the fence runs in-process only and no
    watchdog is started.
  - The consistency level C(application) is never claimed, because the guest agent does not report whether fsfreeze
    hooks quiesced applications.
"""
