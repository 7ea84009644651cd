# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """libvirt connection options of the vm_* modules (plugins/module_utils/_libvirt.py)."""

    DOCUMENTATION = r"""
options:
  uri:
    description:
      - libvirt connection URI of the KVM host, for example V(qemu:///system), V(qemu+ssh://root@kvm1/system)
        or V(qemu+tls://kvm1/system). Never use the unauthenticated V(qemu+tcp) transport.
      - V(test:///default) or V(test:///path/to/node.xml) use libvirt's in-process test driver (tests, demos).
      - If not set in the task, the value of environment variable E(LIBVIRT_DEFAULT_URI) is used.
    type: str
    default: qemu:///system
  retries:
    description:
      - How many times a transient libvirt failure (libvirtd restarting, socket closed, RPC error) is retried
        with a fresh connection before the module fails (0-10; Snap Creator's C(KVM_CMD_RETRY_COUNT)).
    type: int
    default: 3
requirements:
  - libvirt-python on the KVM host (Debian/Ubuntu C(python3-libvirt), RHEL C(python3-libvirt)).
"""
