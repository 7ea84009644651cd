#!/usr/bin/python
# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vm_restore
short_description: Domain side of a KVM VM restore - stop, define from saved XML, restore NVRAM, start, verify
version_added: 1.0.0
description:
  - Validates the saved domain XML first (it is untrusted input) - parseable, no DTD or entities, the same UUID
    and name as the target VM when it exists - and applies the allow-list policy of the collection
    (docs/security.md) - the emulator is the host's own (from libvirt's capabilities) or is replaced by it;
    serial/console/parallel/channel devices of unsafe types (file, pipe, unix outside libvirt's channel dir, dev,
    tcp, udp) are rewritten to pty; C(qemu:*) elements, C(<hostdev>), C(<filesystem>), smartcard, redirdev, other
    unlisted devices, binaries named by C(<driver>)/C(<backend>)/C(<script>) and network disks are refused; every
    disk source, backing file and the NVRAM/loader path lie under O(allowed_paths) (or the host's firmware and
    NVRAM dirs; resolved, no C(..), no symlinked component); no other VM of the host uses its disks. A refused
    XML changes nothing; every refusal and rewrite names the element and the reason.
  - A running VM is refused unless O(force=true); with O(force=true) it is shut down gracefully (up to
    O(shutdown_timeout) seconds) and destroyed only if it does not stop.
  - Defines the VM from the XML (also when the VM was deleted), copies the saved NVRAM file to the XML's NVRAM path,
    starts the VM per O(start), and verifies it runs and its guest agent answers a guest-ping within
    O(verify_timeout) seconds (a VM without an agent channel reports C(agent=absent)).
  - The disks themselves are restored by M(kvmsnap.core.ontap_restore) before this module runs.
author:
  - kvmsnap.core contributors (@kvmsnap)
extends_documentation_fragment:
  - kvmsnap.core.libvirt
  - kvmsnap.core.attributes
attributes:
  check_mode:
    support: full
    details:
      - Validates the XML and the target and reports the actions it would take.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - A restore is an action; every run defines the VM again (and stops/starts it as asked).
options:
  vm:
    description:
      - The target VM by name or UUID. Defaults to the name and UUID in the saved XML.
      - If it exists, its UUID and name must match the saved XML.
    type: str
  domain_xml:
    description:
      - The saved domain XML as a string.
    type: str
  domain_xml_path:
    description:
      - Path of the saved domain XML file on the KVM host (a regular file, not a symlink).
    type: path
  nvram:
    description:
      - Path of the saved NVRAM file; it is copied to the NVRAM path named in the XML.
    type: path
  allowed_paths:
    description:
      - Directories (datastore mount points) under which every disk of the XML must lie.
    type: list
    elements: path
    default: []
  boot_dirs:
    description:
      - Host directories from which the VM may boot a kernel, initrd or dtb (direct kernel boot), besides
        O(allowed_paths) and the host's firmware dirs.
    type: list
    elements: path
    default: []
  force:
    description:
      - Stop a running VM (graceful shutdown, then destroy after O(shutdown_timeout)). Without it a running VM
        is refused and nothing is changed.
    type: bool
    default: false
  shutdown_timeout:
    description:
      - Seconds to wait for a graceful shutdown before the VM is destroyed (only with O(force=true); 1-3600).
    type: int
    default: 120
  start:
    description:
      - V(auto) starts the VM if it was running before the restore; V(always) starts it; V(never) leaves it shut off.
    type: str
    choices: [auto, always, never]
    default: auto
  verify_timeout:
    description:
      - Seconds to wait for the started VM to run and its guest agent to answer (1-86400).
    type: int
    default: 120
  state_dir:
    description:
      - Directory of the fence locks shared with M(kvmsnap.core.vm_quiesce) and M(kvmsnap.core.vm_backup). The restore
        holds the VM's lock while it changes the VM, so no backup fences it meanwhile; a VM locked by a live run is
        refused.
    type: path
    default: /var/lib/kvmsnap
  run_id:
    description:
      - The restore run that holds the VM's lock (taken by M(kvmsnap.core.vm_quiesce) O(kvmsnap.core.vm_quiesce#module:state=locked) in the run's
        pre-flight and released by the run). The module checks that this run still holds it and takes no lock of
        its own; without it the module takes and releases the lock itself.
    type: str
  define:
    description:
      - V(false) only stops the VM (and copies its XML and NVRAM aside, see O(aside_dir)); nothing is defined or
        started. The restore role stops the VMs first, takes the safety snapshot, then restores the disks.
    type: bool
    default: true
  aside_dir:
    description:
      - Directory on the KVM host (created 0700) to which the VM's current domain XML (C(<uuid>.xml)) and NVRAM
        (C(<uuid>.nvram)) are copied (0600) before anything is changed; they live outside ONTAP, so no snapshot
        holds them. A copy already there is kept (a rerun of an interrupted restore).
    type: path
  as_new:
    description:
      - Define the saved VM as a B(new) VM next to the original instead of restoring the original. The copy gets
        the new O(as_new.name), a new UUID, new MAC addresses, its disks at O(as_new.disk_paths) (restored there
        by M(kvmsnap.core.ontap_restore) O(kvmsnap.core.ontap_restore#module:restore_paths)) and its own NVRAM
        file at O(as_new.nvram_path) (the saved O(nvram) is copied there).
      - The original VM is never touched (not stopped, not redefined, none of its files written); O(vm) and
        O(aside_dir) are refused with it, O(force) and O(define) do not apply; O(run_id) names the run that
        locked the copy's new UUID.
      - Refused before anything is changed - a VM of the new name or UUID on the host, a new path another VM uses,
        a file at O(as_new.nvram_path), a writable disk without a new path, and the files at the new disk paths
        per O(as_new.disks).
      - O(start=auto) leaves the copy shut off, as O(start=never); O(start=always) starts it and checks its agent.
    type: dict
    version_added: 1.1.0
    suboptions:
      name:
        description:
          - The copy's name (1-64 characters from letters, digits and C(. _ + -), not starting with C(.) or C(-)).
        type: str
        required: true
      uuid:
        description:
          - The copy's UUID; a random one when omitted.
        type: str
      disk_paths:
        description:
          - Mapping of each writable disk's path in the saved XML to the copy's path. CD-ROMs, floppies and read-only
            disks may stay shared; any other disk without an entry is refused.
        type: dict
        default: {}
      nvram_path:
        description:
          - The copy's NVRAM file (required when the saved XML has an NVRAM file; must not exist).
        type: path
      disks:
        description:
          - V(present) (after the ONTAP restore) - every new disk path is a regular file; V(absent) (a pre-flight in
            check mode) - nothing exists at any new disk path yet.
        type: str
        choices: [present, absent]
        default: present
seealso:
  - module: kvmsnap.core.ontap_restore
  - module: kvmsnap.core.vm_info
"""

EXAMPLES = r"""
# A backup writes each VM's manifest into <datastore>/.kvmsnap/<VM uuid>/ (manifest.json, domain.xml, nvram);
# a snapshot carries it as <datastore>/.snapshot/<snapshot>/.kvmsnap/<VM uuid>/.
- name: Read web1's manifest from a snapshot (signature, allow-list and paths checked)
  kvmsnap.core.backup_manifest:
    state: read
    snapshot: kvmsnap-daily_20261126T020000Z
    datastores: [/var/lib/libvirt/images/ds1]
    select: [web1]
    manifest_key: "{{ kvmsnap_manifest_key }}"
  register: saved

- name: Re-create web1 (deleted) from it and start it
  kvmsnap.core.vm_restore:
    domain_xml: "{{ saved.manifests[0].domain_xml_text }}"
    nvram: "{{ saved.manifests[0].nvram_file | default(omit, true) }}"
    allowed_paths: [/var/lib/libvirt/images/ds1]
    start: always

- name: Define a VM again from the saved XML file in the snapshot (the UUID is the directory name)
  kvmsnap.core.vm_restore:
    domain_xml_path: /var/lib/libvirt/images/ds1/.snapshot/kvmsnap-daily_20261126T020000Z/.kvmsnap/6695eb01-f6a4-8304-79aa-97f2502e193f/domain.xml
    nvram: /var/lib/libvirt/images/ds1/.snapshot/kvmsnap-daily_20261126T020000Z/.kvmsnap/6695eb01-f6a4-8304-79aa-97f2502e193f/nvram
    allowed_paths: [/var/lib/libvirt/images/ds1]
    start: never

- name: Define web1 as a new VM web1-test from its restored copies (web1 keeps running, untouched)
  kvmsnap.core.vm_restore:
    domain_xml: "{{ saved.manifests[0].domain_xml_text }}"
    nvram: "{{ saved.manifests[0].nvram_file | default(omit, true) }}"
    allowed_paths: [/var/lib/libvirt/images/ds1]
    as_new:
      name: web1-test
      disk_paths:
        /var/lib/libvirt/images/ds1/web1.qcow2: /var/lib/libvirt/images/ds1/web1-test.qcow2
      nvram_path: /var/lib/libvirt/qemu/nvram/web1-test_VARS.fd
    start: always

- name: Restore a running VM (shut it down first)
  kvmsnap.core.vm_restore:
    vm: web1
    domain_xml: "{{ saved.manifests[0].domain_xml_text }}"
    allowed_paths: [/var/lib/libvirt/images/ds1, /var/lib/libvirt/images/ds2]
    force: true
    shutdown_timeout: 60
"""

RETURN = r"""
vm:
  description: Name and UUID of the restored VM.
  returned: when the XML was valid
  type: dict
  sample: {name: web1, uuid: 6695eb01-f6a4-8304-79aa-97f2502e193f}
existed:
  description: Whether the VM was defined on the host before the restore.
  returned: always
  type: bool
prior_state:
  description: State before the restore (V(absent) for a deleted VM).
  returned: when the XML was valid
  type: str
state:
  description: State after the restore.
  returned: success
  type: str
actions:
  description: What was done (or would be done in check mode), in order - aside, shutdown, destroy, define, nvram, start.
  returned: always
  type: list
  elements: str
shutdown:
  description:
    - How the running VM was stopped before the restore - C(how) V(graceful) (it shut down within O(shutdown_timeout)),
      V(forced) (destroyed after O(shutdown_timeout)) or V(destroyed) (it was paused) - C(seconds) it took and the
      C(timeout) allowed.
  returned: when the VM was running and was stopped, not in check mode
  type: dict
  sample: {how: graceful, seconds: 4.2, timeout: 120}
agent:
  description: Guest agent status after the start - V(ok), V(absent) (no agent channel), V(unresponsive), V(not started).
  returned: always
  type: str
rewritten:
  description: What the policy rewrote in the saved XML before it was defined (element, old value, new value).
  returned: when the XML was valid
  type: list
  elements: str
  sample: ["<serial 0>: type='file' path=/var/log/web1.log rewritten to type='pty' (...)"]
aside:
  description: Where the VM's domain XML and NVRAM before the restore were copied (O(aside_dir)).
  returned: with O(aside_dir) when the VM existed, not in check mode
  type: dict
  sample: {dir: /var/lib/kvmsnap/restore/R, xml: /var/lib/kvmsnap/restore/R/6695eb01-f6a4-8304-79aa-97f2502e193f.xml, nvram: null}
xml_sha256:
  description: SHA-256 of the saved XML (before the policy's rewrites).
  returned: when the XML was valid
  type: str
source:
  description: Name and UUID of the backed-up VM the copy was made from (untouched).
  returned: with O(as_new), when the XML was valid
  type: dict
  version_added: 1.1.0
  sample: {name: web1, uuid: 6695eb01-f6a4-8304-79aa-97f2502e193f}
new:
  description:
    - The copy - C(name), C(uuid), C(disks) (C(target), C(source) the original's path, C(path) the copy's), C(nvram)
      (C(source), C(path), or null), C(macs) and C(started).
  returned: with O(as_new), when the XML was valid
  type: dict
  version_added: 1.1.0
  sample:
    name: web1-test
    uuid: 0b8c4f5e-2a57-4d0e-9d1c-6f3a3c2f1a10
    disks: [{target: vda, source: /var/lib/libvirt/images/ds1/web1.qcow2, path: /var/lib/libvirt/images/ds1/web1-test.qcow2}]
    nvram: null
    macs: ["52:54:00:3e:01:9a"]
    started: true
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmsnap.core.plugins.module_utils import _domain_restore, _domain_restore_as, _libvirt_args
from ansible_collections.kvmsnap.core.plugins.module_utils._defaults import DEFAULT_STATE_DIR
from ansible_collections.kvmsnap.core.plugins.module_utils._vm_module import run_vm_module

ARGUMENT_SPEC = _libvirt_args.libvirt_argument_spec(
    vm=dict(type="str"),
    domain_xml=dict(type="str"),
    domain_xml_path=dict(type="path"),
    nvram=dict(type="path"),
    allowed_paths=dict(type="list", elements="path", default=[]),
    boot_dirs=dict(type="list", elements="path", default=[]),
    force=dict(type="bool", default=False),
    shutdown_timeout=dict(type="int", default=120),
    start=dict(type="str", choices=["auto", "always", "never"], default="auto"),
    verify_timeout=dict(type="int", default=120),
    state_dir=dict(type="path", default=DEFAULT_STATE_DIR),
    run_id=dict(type="str"),
    define=dict(type="bool", default=True),
    aside_dir=dict(type="path"),
    as_new=dict(type="dict", options=dict(
        name=dict(type="str", required=True),
        uuid=dict(type="str"),
        disk_paths=dict(type="dict", default={}),
        nvram_path=dict(type="path"),
        disks=dict(type="str", choices=["present", "absent"], default="present"),
    )),
)


def run(module: AnsibleModule) -> dict:
    try:
        if module.params.get("as_new"):
            return _domain_restore_as.run_restore_as(module.params, module.check_mode)
        return _domain_restore.run_restore(module.params, module.check_mode)
    except OSError as err:
        raise _domain_restore.RestoreError("vm_restore: %s" % err) from err


def main() -> None:
    run_vm_module(ARGUMENT_SPEC, run, limits=("shutdown_timeout", "verify_timeout", "retries"),
                  mutually_exclusive=[("domain_xml", "domain_xml_path")],
                  required_one_of=[("domain_xml", "domain_xml_path")])


if __name__ == "__main__":
    main()
