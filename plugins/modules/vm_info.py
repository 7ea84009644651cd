#!/usr/bin/python
# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vm_info
short_description: Discover KVM/libvirt VMs, their disks, and the ONTAP volume or LUN under each disk
version_added: 1.0.0
description:
  - Lists the domains of one libvirt connection in bulk (one read-only connection, one XML parse per domain;
    never a C(virsh) process per VM) and reports for each VM its name, UUID, state, persistence, every disk
    (file, block and network disks, cdroms, format, backing chain, target, read-only flag), the NVRAM file and
    firmware loader, and whether a QEMU guest agent channel is present and connected.
  - For every disk it finds the storage location, in this order. First the explicit maps O(vm_mapping)
    (Snap Creator C(KVM_VM_MAPPING), for block/LUN disks) and O(datastores) (host directory to
    controller/SVM/volume, longest matching prefix after resolving symbolic links). Then NFS, from the
    host's mount table, the server address (C(addr=)) to the data LIF and its SVM, and the export path to
    the volume with the longest matching junction path (the rest is RV(vms[].disks[].path_in_volume)).
    Then SAN, from the block device to its device-mapper multipath WWID (C(3600a0980...)), decoded to
    the ONTAP LUN serial number.
  - The ONTAP facts (data LIFs, volumes with junction paths, LUNs with serial numbers) are read from the
    controllers in O(controllers) through the collection's ONTAP interface, or taken from O(storage_inventory).
  - cdrom and floppy devices (ISO images) are reported with RV(vms[].disks[].skipped=true) and not mapped.
    A disk (or backing file) on no known volume fails the task, naming the VM and the disk, unless
    O(strict=false); then it is reported in RV(unprotectable). VMs sharing one LUN are reported there too,
    and so is LVM on a LUN (as a note only).
  - O(vms) and O(query) select the VMs to report.
author:
  - kvmsnap.core contributors (@kvmsnap)
requirements:
  - jmespath (only for O(query))
extends_documentation_fragment:
  - kvmsnap.core.libvirt
  - kvmsnap.core.datastores
  - kvmsnap.core.attributes
  - kvmsnap.core.attributes.info_module
options:
  vms:
    description:
      - Report only these VMs, each given by libvirt domain name or UUID. A string of UUID form is looked up
        strictly as a UUID.
      - A VM that libvirt does not know fails the task (all unknown VMs are named), unless O(unknown_vms=report).
      - Default is every domain of the connection.
      - When a selected VM has a disk on a LUN, the other domains are read too, to find a LUN it shares with them.
    type: list
    elements: str
  unknown_vms:
    description:
      - What to do with entries of O(vms) that libvirt does not know.
      - V(fail) fails the task and names all of them (one KVM host per run).
      - V(report) lists them in RV(not_found) and reports the VMs that were found (a VM list that spans several
        KVM hosts, where each host knows only its own VMs).
    type: str
    choices: [fail, report]
    default: fail
  query:
    description:
      - A JMESPath expression applied to the list of VMs (as returned in RV(vms)) that selects the VMs to
        report, for example V([?state=='running']) or V([?disks[?volume=='vol_ds1']]).
      - It must select VM objects (a list of dicts). Applied after O(vms).
    type: str
  strict:
    description:
      - When V(true), a disk of a reported VM that is on no known ONTAP volume or LUN, or a LUN shared by several
        VMs, fails the task with a message naming each VM and disk.
      - When V(false), such VMs are reported in RV(unprotectable) and the task succeeds.
    type: bool
    default: true
  map_storage:
    description:
      - Map each disk to its controller, SVM and volume or LUN. V(false) reports only the libvirt side.
    type: bool
    default: true
  vm_mapping:
    description:
      - Explicit VM to LUN map. Either Snap Creator's string form C(VM1:ctrl1:/vol/vol1/lun1;VM2:ctrl2:/vol/vol2/lun2)
        (a trailing C(;) is accepted; an IPv6 controller is written in brackets, C(VM1:[fe80::1]:/vol/v/l)) or a
        list of dicts with the keys C(vm), C(controller), C(path), and optionally C(svm) and C(volume).
      - It applies to the block and network disks of the listed VMs. Empty entries, missing fields, other
        separators (comma, newline, tab, full-width semicolon), the same VM with two paths and two VMs on one LUN
        are refused with a message naming the entry.
    type: raw
  controllers:
    description:
      - ONTAP controllers to read data LIFs, volumes (junction paths) and LUNs (serial numbers) from, through the
        collection's ONTAP interface (read-only calls). Contacted only when a disk needs NFS or SAN mapping.
    type: list
    elements: dict
    suboptions:
      name:
        description: Inventory name of the controller; reported as RV(vms[].disks[].controller).
        type: str
        required: true
      hostname:
        description: Cluster management host name or IP address.
        type: str
        required: true
      port:
        description: HTTPS port of the management interface. Defaults to 443.
        type: int
      username:
        description: ONTAP user for basic authentication.
        type: str
      password:
        description: Password of O(controllers[].username).
        type: str
      cert_file:
        description: PEM client certificate for certificate authentication; requires O(controllers[].key_file).
        type: path
      key_file:
        description: PEM private key of O(controllers[].cert_file); must not be readable by group or others.
        type: path
      validate_certs:
        description: Verify the controller's TLS certificate.
        type: bool
        default: true
      ca_path:
        description: PEM CA bundle used to verify the controller's certificate.
        type: path
      transport:
        description: API used to talk to the controller.
        type: str
        choices: [rest, zapi, auto]
        default: rest
      timeout:
        description: Seconds to wait for one API call.
        type: int
        default: 60
      retries:
        description: How many times a transient ONTAP failure is retried.
        type: int
        default: 3
  storage_inventory:
    description:
      - ONTAP facts gathered before (for example by a role), used instead of, or together with, O(controllers).
    type: list
    elements: dict
    suboptions:
      controller:
        description: Inventory name of the controller.
        type: str
        required: true
      svm:
        description: SVM name.
        type: str
        required: true
      lifs:
        description: IP addresses of the SVM's data LIFs.
        type: list
        elements: str
        default: []
      volumes:
        description: The SVM's volumes.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description: Volume name.
            type: str
            required: true
          junction_path:
            description: Junction path in the SVM namespace (V(/) for the SVM root volume); unset if not mounted.
            type: str
      luns:
        description: The SVM's LUNs.
        type: list
        elements: dict
        default: []
        suboptions:
          path:
            description: LUN path, C(/vol/<volume>[/<qtree>]/<lun>).
            type: str
            required: true
          serial:
            description: The LUN's 12-character serial number.
            type: str
          volume:
            description: Volume of the LUN; derived from O(storage_inventory[].luns[].path) when not given.
            type: str
  host_root:
    description:
      - Where the KVM host's C(/proc) and C(/sys) are seen (for example a container that mounts the host at
        C(/host)). The mount table and the multipath devices are read below it.
    type: path
    default: /
notes:
  - Uses a read-only libvirt connection; nothing on the host or on the controllers is changed.
  - RV(vms[].agent.connected) is only known for running domains (it comes from the live domain XML).
seealso:
  - module: kvmsnap.core.vm_quiesce
"""

EXAMPLES = r"""
- name: Discover every VM of the host and the ONTAP volume under each disk
  kvmsnap.core.vm_info:
    controllers:
      - name: cluster1
        hostname: cluster1.example.com
        username: backup
        password: "{{ vault_ontap_password }}"
  register: discovery

- name: Running VMs only, disks mapped through explicit datastores
  kvmsnap.core.vm_info:
    query: "[?state=='running']"
    datastores:
      - path: /var/lib/libvirt/images/ds1
        controller: cluster1
        svm: svm1
        volume: vol_ds1
  register: running

- name: Snap Creator style mapping for SAN VMs, and facts gathered earlier
  kvmsnap.core.vm_info:
    vms: [db01, db02]
    vm_mapping: "db01:cluster1:/vol/vol_db/lun_db01;db02:cluster1:/vol/vol_db/lun_db02;"
    storage_inventory:
      - controller: cluster1
        svm: svm_san
        luns:
          - path: /vol/vol_db/lun_db01
            serial: D31sh#DQGQUu
    strict: false
  register: san

- name: Which VMs live on vol_ds1?
  ansible.builtin.debug:
    msg: "{{ discovery.volumes | selectattr('volume', 'equalto', 'vol_ds1') | map(attribute='vms') | list }}"
"""

RETURN = r"""
vms:
  description: The selected VMs.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Domain name.
      type: str
      sample: web01
    uuid:
      description: Domain UUID.
      type: str
      sample: 6695eb01-f6a4-8304-79aa-97f2502e193f
    state:
      description: Domain state.
      type: str
      sample: running
      choices: [nostate, running, blocked, paused, shutdown, shutoff, crashed, pmsuspended, unknown]
    persistent:
      description: Whether the domain is defined (V(false) for a transient domain).
      type: bool
    nvram:
      description: Path of the NVRAM (UEFI variables) file, or null.
      type: str
    loader:
      description: Firmware loader (C(path), C(type), C(readonly), C(firmware)), or null for the default BIOS.
      type: dict
    agent:
      description: QEMU guest agent channel.
      type: dict
      contains:
        present:
          description: The domain has a C(org.qemu.guest_agent.0) channel.
          type: bool
        connected:
          description: The agent in the guest has the channel open (live XML of a running domain).
          type: bool
    disks:
      description: Every disk device of the domain, with its storage location.
      type: list
      elements: dict
      contains:
        path:
          description: Source file, block device, or C(protocol:name) of a network disk.
          type: str
        target:
          description: Target device name in the guest, for example C(vda).
          type: str
        bus:
          description: Target bus.
          type: str
        device:
          description: Device kind (C(disk), C(cdrom), C(floppy), C(lun)).
          type: str
        type:
          description: Source kind (C(file), C(block), C(network), C(volume), ...).
          type: str
        format:
          description: Image format (C(raw), C(qcow2), ...).
          type: str
        readonly:
          description: Attached read-only.
          type: bool
        shareable:
          description: Marked shareable between domains.
          type: bool
        backing_chain:
          description: Backing files of the image, top first, each with C(type), C(format), C(path) and (when
            mapped) the same location keys as the disk.
          type: list
          elements: dict
        controller:
          description: Controller (inventory name) that holds the disk, or null.
          type: str
        svm:
          description: SVM of the volume or LUN, or null.
          type: str
        volume:
          description: ONTAP volume that holds the disk, or null.
          type: str
        path_in_volume:
          description: Path of the disk file relative to the volume root (C(/)-prefixed), for NFS/datastore disks.
          type: str
        lun:
          description: The LUN (C(path), C(serial), and C(wwid) when found through multipath) for SAN disks, or null.
          type: dict
        mapped_by:
          description: How the location was found (C(vm_mapping), C(datastores), C(nfs), C(san)), or null.
          type: str
        datastore:
          description: The host directory (datastore path or NFS mount point) of a file disk, or null.
          type: str
        datastore_in_volume:
          description: Where RV(vms[].disks[].datastore) lies inside the volume (the junction offset), or null.
          type: str
        skipped:
          description: The device is not backed up (cdrom, floppy).
          type: bool
        reason:
          description: Why the disk is skipped or not mapped, or null.
          type: str
        notes:
          description: Remarks about the mapping (LVM on a LUN, backing files on another volume, ...).
          type: list
          elements: str
unprotectable:
  description: VMs (and disks) that cannot be protected as they are; C(severity) is C(error) or C(note).
  returned: always
  type: list
  elements: dict
  sample:
    - vm: web02
      uuid: 0f6c1e3a-4b7e-4c36-9d5b-8e0f3b0a3c11
      disk: vda
      severity: error
      reason: "VM web02 disk vda: /var/lib/libvirt/images/web02.qcow2 is on /dev/sda1 (ext4 at /), not on an NFS datastore"
volumes:
  description: Per controller, SVM and volume, the selected VMs that have disks on it.
  returned: always
  type: list
  elements: dict
  sample:
    - controller: cluster1
      svm: svm1
      volume: vol_ds1
      vms: [web01, web03]
      luns: []
      paths: [/web01/web01.qcow2, /web03/web03.qcow2]
datastores:
  description:
    - Per host datastore directory (configured datastore or NFS mount point), its volume, where it lies inside
      the volume (C(path_in_volume), the junction offset, for example C(/sub/dir) for an NFS mount of C(svm:/junction/sub/dir)),
      and its VMs.
  returned: always
  type: list
  elements: dict
  sample:
    - path: /var/lib/libvirt/images/ds1
      controller: cluster1
      svm: svm1
      volume: vol_ds1
      path_in_volume: /
      mapped_by: nfs
      vms: [web01, web03]
vm_mapping:
  description:
    - The discovered VM to LUN map of the selected VMs, in the structured form that O(vm_mapping) accepts (one
      entry per VM and LUN; Snap Creator's C(KVM_VM_MAPPING) equivalent). A VM on several LUNs has several
      entries, which O(vm_mapping) does not accept back (one LUN per VM, as in Snap Creator).
  returned: always
  type: list
  elements: dict
  sample:
    - vm: db01
      controller: cluster1
      svm: svm_san
      volume: vol_db
      path: /vol/vol_db/lun_db01
not_found:
  description: Entries of O(vms) that libvirt does not know (only with O(unknown_vms=report); else the task fails).
  returned: always
  type: list
  elements: str
  sample: [db02]
libvirt_host:
  description:
    - The libvirt that answered at O(uri) (C(hostname), C(uuid) of the host from the capabilities, C(uri)). Two
      inventory hosts with the same value are one libvirt (the restore guard uses it).
  returned: always
  type: dict
  sample: {hostname: kvm1.example.com, uuid: 4c4c4544-0042-3510-8052-b4c04f4a4e32, uri: "qemu:///system"}
elapsed_ms:
  description: Time the module spent (libvirt connection and listing, XML parsing, mapping, query), in milliseconds.
  returned: always
  type: float
  sample: 412.5
timings:
  description:
    - The parts of RV(elapsed_ms), in milliseconds, C(options_ms) (option parsing), C(connect_ms) (opening the
      libvirt connection; for a C(test:///file.xml) URI this is the test driver parsing the file), C(list_ms)
      (listing the domains, their state and XML), C(parse_ms), C(map_ms) (storage mapping, including the ONTAP
      calls for O(controllers)) and C(query_summary_ms).
  returned: always
  type: dict
  sample: {options_ms: 1.2, connect_ms: 3.1, list_ms: 40.2, parse_ms: 39.8, map_ms: 33.0, query_summary_ms: 8.1}
"""

from typing import Any, Dict

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmsnap.core.plugins.module_utils import _libvirt, _libvirt_args
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_args import CONNECTION_SUBOPTIONS
from ansible_collections.kvmsnap.core.plugins.module_utils._storage_map import DATASTORES_SPEC
from ansible_collections.kvmsnap.core.plugins.module_utils._vm_discovery import VmInfoError, discover
from ansible_collections.kvmsnap.core.plugins.module_utils._vm_module import run_vm_module

# the ONTAP connection options (without their environment fallbacks: each controller is named in the task)
CONTROLLER_OPTIONS = dict(
    name=dict(type="str", required=True),
    **CONNECTION_SUBOPTIONS
)

ARGUMENT_SPEC = _libvirt_args.libvirt_argument_spec(
    vms=dict(type="list", elements="str"),
    unknown_vms=dict(type="str", default="fail", choices=["fail", "report"]),
    query=dict(type="str"),
    strict=dict(type="bool", default=True),
    map_storage=dict(type="bool", default=True),
    vm_mapping=dict(type="raw"),
    datastores=DATASTORES_SPEC,
    controllers=dict(type="list", elements="dict", options=CONTROLLER_OPTIONS),
    storage_inventory=dict(type="list", elements="dict", options=dict(
        controller=dict(type="str", required=True),
        svm=dict(type="str", required=True),
        lifs=dict(type="list", elements="str", default=[]),
        volumes=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            junction_path=dict(type="str"),
        )),
        luns=dict(type="list", elements="dict", default=[], options=dict(
            path=dict(type="str", required=True),
            serial=dict(type="str"),
            volume=dict(type="str"),
        )),
    )),
    host_root=dict(type="path", default="/"),
)


def run(module: AnsibleModule) -> Dict[str, Any]:
    try:
        return discover(module)
    except _libvirt.libvirt.libvirtError as exc:
        raise VmInfoError("libvirt at %s: %s" % (module.params["uri"], exc)) from exc


def main() -> None:
    run_vm_module(ARGUMENT_SPEC, run, limits=("retries",))


if __name__ == "__main__":
    main()
