#!/usr/bin/python
# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vm_verify
short_description: Prove a backup boots - start throwaway copies of backed-up VMs from a snapshot, check them, remove them
version_added: 1.1.0
description:
  - For each VM of O(vms) (the manifests M(kvmsnap.core.backup_manifest_info) read from the snapshot and checked),
    starts a throwaway copy from snapshot O(snapshot) without writing to it - every disk a qcow2 overlay in the
    copy's own directory under O(work_dir) whose backing file is the read-only image under
    C(<datastore>/.snapshot/<snapshot>/) (format given explicitly, never relabelled by libvirt); a new name
    (C(kvmsnap-verify-<token>-<vm>)), UUID and MACs; no network unless the isolated network O(network) is named;
    host devices, shares, vhost-user, graphics listeners, TPM and vsock left out.
  - The saved domain XML is untrusted - it passes the identity and allow-list checks of the restore again here, each
    disk must lie in one of O(datastores) and its image in the snapshot must be a regular file reached without a
    symlink and without a backing file of its own; a copy whose XML names any file outside its directory, the
    snapshot directories or the host's firmware/boot directories is not started.
  - Waits for the guest agent (C(guest-ping)) or, for a VM without an agent channel, for O(boot_marker) on the
    serial console, up to O(boot_timeout) seconds; then runs O(command) in the guest through the agent.
  - Destroys each copy and deletes its overlays when its check ends, when the run fails and when it is
    interrupted; leftovers of a killed run (domains named C(kvmsnap-verify-*) that say they are a copy, and their
    directories under O(work_dir)) are removed at the start of the next run, under O(work_dir)'s lock.
  - At most O(parallel) copies run at once, fewer when the host's available memory minus O(memory_reserve) does not
    hold them (the limit chosen is returned in RV(parallel)).
  - VMs on SAN LUNs (block devices) are not verified; they are reported with the reason.
author:
  - kvmsnap.core contributors (@kvmsnap)
extends_documentation_fragment:
  - kvmsnap.core.libvirt
  - kvmsnap.core.attributes
attributes:
  check_mode:
    support: full
    details:
      - Checks every VM and the options and reports the plan and the parallelism; starts nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run boots the copies again; it leaves nothing behind.
options:
  snapshot:
    description:
      - Name of the snapshot to boot the VMs from.
    type: str
    required: true
  vms:
    description:
      - The VMs to verify, as M(kvmsnap.core.backup_manifest_info) returned their manifests.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The VM's name.
        type: str
        required: true
      uuid:
        description: The VM's UUID.
        type: str
        required: true
      xml:
        description: The saved domain XML (the manifest's C(domain_xml_text)).
        type: str
        required: true
      nvram_file:
        description: The saved NVRAM file in the snapshot or the local catalog, if any.
        type: path
  datastores:
    description:
      - The host's own datastore directories (from discovery); every disk of a VM must lie in one of them.
    type: list
    elements: path
    required: true
  datastore_offsets:
    description:
      - Where each of O(datastores) lies inside its volume (datastore path to junction offset, C(/)-prefixed); a
        datastore not named is its volume's root. The snapshot's copy is then
        C(<volume root>/.snapshot/<snapshot>/<offset>).
    type: dict
    default: {}
  work_dir:
    description:
      - Directory of the copies' overlays, NVRAM and console logs; QEMU's user must reach it (not under a private
        home), and it must not lie in a datastore.
    type: path
    default: /var/lib/kvmsnap-verify
  state_dir:
    description:
      - State directory of the collection (the local manifest catalog, where the NVRAM of a SAN VM is kept).
    type: path
    default: /var/lib/kvmsnap
  network:
    description:
      - An isolated libvirt network (active, no C(<forward>)) to attach the copies' interfaces to; without it the
        copies have no network interface.
    type: str
  command:
    description:
      - A program and its arguments to run in each copy through the guest agent (C(guest-exec)) once it answers;
        a copy passes only when it exits with 0. Empty runs no check.
    type: list
    elements: str
    default: []
  command_timeout:
    description: Seconds O(command) may run.
    type: int
    default: 120
  boot_timeout:
    description: Seconds a copy may take until its agent answers (or O(boot_marker) appears).
    type: int
    default: 300
  boot_marker:
    description:
      - Regular expression that marks a finished boot on the serial console of a VM without a guest agent channel.
        A VM with neither is not verified.
    type: str
  parallel:
    description: At most so many copies at once (1-64); memory may allow fewer.
    type: int
    default: 2
  memory_reserve:
    description: MiB of the host's available memory that no copy may use.
    type: int
    default: 1024
  output_limit:
    description: Bytes of the check's stdout and stderr returned each (the rest is cut; C(truncated) in RV(vms) says so).
    type: int
    default: 4096
  boot_dirs:
    description:
      - Host directories from which a VM may boot a kernel, initrd or dtb (direct kernel boot), besides the
        firmware directories libvirt reports.
    type: list
    elements: path
    default: []
  host:
    description: The KVM host's inventory name, named in the messages.
    type: str
notes:
  - The copies are transient domains; nothing is written to C(/etc/libvirt).
seealso:
  - module: kvmsnap.core.backup_manifest_info
  - module: kvmsnap.core.ontap_snapshot
"""

EXAMPLES = r"""
- name: Boot copies of the VMs of a snapshot and check that their agent answers and a command passes
  kvmsnap.core.vm_verify:
    snapshot: kvmsnap-daily_20260101T020000Z
    vms: "{{ manifests.manifests | kvmsnap.core.verify_vms }}"
    datastores: [/mnt/ds1]
    command: [/bin/sh, -c, "systemctl is-system-running --wait"]
  register: verified
"""

RETURN = r"""
verified:
  description: Every VM of O(vms) booted and passed O(command) (false with no VM).
  returned: always
  type: bool
  sample: true
vms:
  description:
    - Per VM - C(name), C(uuid), C(copy) (the copy's name), C(booted), C(agent_seconds) (seconds from start to the
      first guest-ping answer), C(boot_seconds), C(check) (C(command), C(rc), C(stdout), C(stderr), C(truncated)),
      C(verified), C(reason) (why not), C(notes) (what the copy left out), C(disks) (C(target), C(backing),
      C(overlay)), C(console_tail) on failure.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "web1", "copy": "kvmsnap-verify-1a2b3c4d-web1", "booted": true, "agent_seconds": 7.5,
            "verified": true, "check": {"rc": 0, "stdout": "running\n", "stderr": "", "truncated": false}}]
not_verified:
  description: The VMs not verified, each with C(vm) and C(reason) (SAN LUNs, refusals, boot or check failures).
  returned: always
  type: list
  elements: dict
  sample: [{"vm": "db1", "reason": "not verified (SAN): <disk sda>: a block device (SAN LUN)"}]
parallel:
  description:
    - The parallelism chosen - C(requested), C(chosen), C(available_mib), C(reserve_mib), C(budget_mib),
      C(largest_copy_mib), C(reason).
  returned: always
  type: dict
  sample: {"requested": 2, "chosen": 2, "available_mib": 23000, "reason": "kvmsnap_verify_parallel=2"}
cleaned:
  description: Leftovers of earlier runs removed (domains and directories).
  returned: always
  type: list
  elements: str
  sample: ["domain kvmsnap-verify-1a2b3c4d-web1"]
snapshot:
  description: The snapshot the copies ran from.
  returned: always
  type: str
  sample: kvmsnap-daily_20260101T020000Z
network:
  description: The isolated network of the copies, or null.
  returned: always
  type: str
  sample: null
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmsnap.core.plugins.module_utils import _libvirt_args, _verify_boot
from ansible_collections.kvmsnap.core.plugins.module_utils._defaults import DEFAULT_STATE_DIR
from ansible_collections.kvmsnap.core.plugins.module_utils._vm_module import run_vm_module

ARGUMENT_SPEC = _libvirt_args.libvirt_argument_spec(
    snapshot=dict(type="str", required=True),
    vms=dict(type="list", elements="dict", required=True, options=dict(
        name=dict(type="str", required=True),
        uuid=dict(type="str", required=True),
        xml=dict(type="str", required=True),
        nvram_file=dict(type="path"),
    )),
    datastores=dict(type="list", elements="path", required=True),
    datastore_offsets=dict(type="dict", default={}),
    work_dir=dict(type="path", default=_verify_boot.DEFAULT_WORK_DIR),
    state_dir=dict(type="path", default=DEFAULT_STATE_DIR),
    network=dict(type="str"),
    command=dict(type="list", elements="str", default=[]),
    command_timeout=dict(type="int", default=120),
    boot_timeout=dict(type="int", default=300),
    boot_marker=dict(type="str"),
    parallel=dict(type="int", default=2),
    memory_reserve=dict(type="int", default=1024),
    output_limit=dict(type="int", default=4096),
    boot_dirs=dict(type="list", elements="path", default=[]),
    host=dict(type="str"),
)


def run(module: AnsibleModule) -> dict:
    try:
        return _verify_boot.run(module.params, module.check_mode)
    except OSError as err:
        host = module.params.get("host") or "the KVM host"
        raise _verify_boot.VerifyBootError("vm_verify on %s: %s" % (host, err)) from err


def main() -> None:
    run_vm_module(ARGUMENT_SPEC, run, limits=("boot_timeout", "command_timeout", "parallel", "memory_reserve",
                                              "output_limit", "retries"))


if __name__ == "__main__":
    main()
