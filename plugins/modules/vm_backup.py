#!/usr/bin/python
# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vm_backup
short_description: Quiesce KVM VMs, take one consistent ONTAP snapshot of all their volumes, release them
version_added: 1.0.0
description:
  - The whole backup fence of one KVM host in one process. Pre-flight first (every VM known, every disk on a
    mapped volume, the volumes exist on the controller, the snapshot name is valid and unused, no other run holds
    the VMs); any failure stops there with nothing touched.
  - Then quiesces all VMs in parallel (as M(kvmsnap.core.vm_quiesce) does), takes one consistent snapshot of
    every volume involved (consistency group or multicreate on the controller), and releases all VMs in parallel.
  - The release is guaranteed on every error path, on SIGTERM/SIGINT/SIGHUP, and, if this process dies, by the
    run's watchdog on the host. If the snapshot fails or does not complete before O(deadline), the VMs are released
    at the deadline anyway and the task fails; a snapshot that completes after the release is reported as
    crash-consistent only.
  - Returns for every VM its pause window (quiesce complete to release complete) in milliseconds and the
    consistency level its disks have in the snapshot.
  - The snapshot is created C(pending) (comment C(state=pending until=<epoch>)); C(until) is the time the comment
    is built (just before the fence) + O(deadline) + O(confirm_grace). After the release, only a snapshot that
    completed inside every VM's quiesce window and reads back valid is confirmed C(good) with the achieved (weakest)
    consistency (unless O(confirm=false), then the caller confirms after its own verification). A late snapshot is marked
    C(late) (C(consistency=crash)); one still running after the release stays pending and the next run (or the
    backup role's recovery step) marks it late once C(until) has passed. Only C(good) snapshots are backups.
author:
  - kvmsnap.core contributors (@kvmsnap)
extends_documentation_fragment:
  - kvmsnap.core.ontap
  - kvmsnap.core.datastores
  - kvmsnap.core.libvirt
  - kvmsnap.core.fence
  - kvmsnap.core.attributes
attributes:
  check_mode:
    support: full
    details:
      - Validates the VMs, the disk to volume mapping, the volumes on the controller, the snapshot name and the
        locks, and reports what would be quiesced and snapshotted, without touching anything.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - With a fixed O(name), a rerun whose snapshot already exists on every volume with this collection's
        metadata, made by the same O(run_id) or confirmed as a good backup, changes nothing and quiesces no VM. A
        snapshot of that name that is not this collection's, is missing on some volume, or is another run's
        unconfirmed (pending or late) snapshot makes the run fail without touching anything; it is never
        overwritten.
      - Without O(name), every run takes a new snapshot.
options:
  vms:
    description:
      - The VMs to back up, each by libvirt domain name or UUID.
    type: list
    elements: str
    required: true
  volumes:
    description:
      - Volumes to snapshot, each as C(svm:volume). Added to the volumes found through O(datastores) and
        O(vm_mapping); alone, the volumes are taken as given (no per-disk check).
    type: list
    elements: str
  vm_mapping:
    description:
      - Explicit VM to volume map, in the same form as M(kvmsnap.core.vm_info)'s O(kvmsnap.core.vm_info#module:vm_mapping)
        and Snap Creator's C(KVM_VM_MAPPING), C(vm:controller:/vol/<volume>/<path>;...), or as a list of dicts with
        C(vm), C(controller), C(path) (C(/vol/<volume>/...)) and optionally C(svm) and C(volume).
      - The controller field must name this task's controller (O(hostname)). The SVM is the one that holds the
        volume on that controller, or the structured form's C(svm).
      - The form C(vm:svm:/vol/...) of earlier releases is refused with a message that shows the entry rewritten.
      - A VM named here is not checked disk by disk.
    type: raw
  kvm_host:
    description:
      - The KVM host's name recorded in the snapshot comment (C(host=)), which restores can select by. The backup
        role passes the inventory name of the host.
      - Defaults to the OS hostname. Characters other than C([A-Za-z0-9_.:@-]) become C(_).
    type: str
  name:
    description:
      - Snapshot name. Defaults to C(kvmsnap-<policy>_<UTC time>).
    type: str
  comment:
    description:
      - Free text appended to the snapshot comment after the kvmsnap metadata (C(kvmsnap:v1 policy=... run=... host=...)).
    type: str
  snapmirror_label:
    description:
      - SnapMirror label of the snapshot (for SnapVault/SnapMirror policies).
    type: str
  policy:
    description:
      - Retention policy the snapshot belongs to (used in the default name and the metadata comment).
    type: str
    default: daily
  run_id:
    description:
      - Id of the backup run, used for the fence journal, the VM locks (a lock taken with
        M(kvmsnap.core.vm_quiesce) O(kvmsnap.core.vm_quiesce#module:state=locked) under the same id is reused) and
        C(run=) in the snapshot comment. Default a new id.
    type: str
  fence:
    description:
      - How each VM's disks are held still for the snapshot (docs/how-it-works.md, "The fences").
      - V(direct) holds the VM (suspended or frozen, see O(mode)) for the whole array snapshot.
      - V(overlay) quiesces the VM only while its disks are switched to external qcow2 overlays beside their images
        (milliseconds), releases it, takes the snapshot of the unchanging base images while the VM runs, then
        commits the overlays back and deletes them. A running VM that cannot take it (block/LUN, shareable, encrypted
        disks, a running block job, a transient VM, ...) fails the run before anything is touched.
      - V(auto) gives the overlay fence to every VM that can take it and the direct fence to the others; the report
        says which fence each VM got and why (RV(vms[].fence), RV(vms[].fence_reason)). On libvirt's test driver
        every VM takes the direct fence.
      - M(kvmsnap.core.vm_quiesce) has the same option for fences that span several hosts.
    type: str
    choices: [direct, overlay, auto]
    default: auto
  confirm:
    description:
      - Confirm the snapshot C(good) when it was taken inside the window. V(false) leaves it C(pending) for the
        caller to confirm after verification (the backup role does so); a late snapshot is marked late either way.
    type: bool
    default: true
  confirm_grace:
    description:
      - Seconds after the deadline in which the snapshot may still be confirmed (its comment's C(until); 1-86400).
    type: int
    default: 300
notes:
  - O(retries) also applies to libvirt calls (reconnect after a libvirtd restart).
seealso:
  - module: kvmsnap.core.vm_quiesce
  - module: kvmsnap.core.ontap_snapshot
"""

EXAMPLES = r"""
- name: Back up two VMs whose disks sit on NFS datastores
  kvmsnap.core.vm_backup:
    vms: [web1, db1]
    mode: auto
    deadline: 60
    datastores:  # the same list as vm_info's and the roles' kvmsnap_datastores
      - {path: /mnt/ds1, controller: cluster1.example.com, svm: svm1, volume: vol_ds1}
      - {path: /mnt/ds2, controller: cluster1.example.com, svm: svm1, volume: vol_ds2}
    policy: daily
    snapmirror_label: daily
    hostname: cluster1.example.com
    username: backup
    password: "{{ ontap_password }}"
  register: backup

- name: Snap Creator style mapping
  kvmsnap.core.vm_backup:
    vms: [VM1]
    vm_mapping: "VM1:svm1:/vol/vol1/lun1;"
    hostname: cluster1.example.com
    username: backup
    password: "{{ ontap_password }}"
"""

RETURN = r"""
run_id:
  description: Id of the run (journal name, and C(run=) in the snapshot comment).
  returned: when the fence ran
  type: str
  sample: backup-20261126T101500Z-1a2b3c4d
name:
  description: The snapshot name.
  returned: always
  type: str
  sample: kvmsnap-daily_20261126T101500Z
comment:
  description: The snapshot comment with the kvmsnap metadata.
  returned: always
  type: str
volumes:
  description: The volumes of the snapshot, C(svm:volume).
  returned: always
  type: list
  elements: str
vms:
  description: One entry per VM.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Domain name.
      type: str
      returned: always
    uuid:
      description: Domain UUID.
      type: str
      returned: always
    action:
      description: What the run did to the VM (V(suspended), V(frozen), V(none)).
      type: str
      returned: always
    consistency:
      description:
        - Consistency level of the VM's disks in the snapshot (C(filesystem), C(suspended), C(crash), C(offline)).
        - C(crash) when the snapshot completed outside the quiesce window.
      type: str
      returned: always
    pause_ms:
      description: Milliseconds from quiesce complete to release complete (0 for a VM not paused or frozen).
      type: float
      returned: when the fence ran
    quiesce_ms:
      description: Milliseconds from the start of the parallel quiesce until this VM was quiesced.
      type: float
      returned: when the fence ran
    release_result:
      description: V(resumed), V(thawed), V(already running), V(untouched), ...
      type: str
      returned: when the fence ran
    fence:
      description: The fence the VM got, V(direct) or V(overlay).
      type: str
      returned: always
    fence_reason:
      description:
        - Why (V(fence=direct), or why a VM could not take the overlay fence, naming each such disk).
        - For an overlay VM, the disks that were not simply overlaid (skipped read-only disks, overlays on top of a
          backing chain; cdroms are not named); none when every disk was.
      type: str
      returned: always
    overlay_at:
      description:
        - Overlay VMs, epoch seconds when their disks were switched to the overlays. From then until
          RV(vms[].commit_started_at) the base images hold the disks as of that instant; the snapshot's create time
          must lie in between, or the snapshot is not good (late).
      type: float
      returned: overlay fence
    commit_started_at:
      description: Overlay VMs, epoch seconds when the commit of the overlays began (after the snapshot).
      type: float
      returned: overlay fence
    overlays:
      description:
        - Overlay VMs, one entry per disk, C(target), C(overlay) (the file), C(result) (V(committed)), C(removed),
          C(commit_ms), C(attempts), C(error). An overlay not committed stays recorded in the journal; the watchdog
          and the next run commit it.
      type: list
      elements: dict
      returned: overlay fence
  sample:
    - {name: web1, uuid: 6695eb01-f6a4-8304-79aa-97f2502e193f, action: frozen, consistency: filesystem,
       pause_ms: 171.3, quiesce_ms: 9.8, release_result: thawed}
snapshots:
  description:
    - The snapshots made (one per volume, all with the same name), each read back from the controller after the
      release; C(state) must be C(valid).
  returned: always
  type: list
  elements: dict
  sample:
    - {svm: svm1, volume: vol_ds1, name: kvmsnap-daily_20261126T101500Z, uuid: 1b2c..., create_time: 1764151200,
       state: valid}
method:
  description: How the controller made the set (V(cg), V(cg_temporary), V(cg_start_commit), V(multicreate), V(single)).
  returned: when a snapshot was made
  type: str
consistency:
  description: The weakest consistency level over all VMs in the snapshot.
  returned: when a snapshot was made
  type: str
max_pause_ms:
  description: The longest pause window of any VM.
  returned: when the fence ran
  type: float
snapshot_ms:
  description: Milliseconds the snapshot call took.
  returned: when the fence ran
  type: float
recovered:
  description:
    - Runs found dead or past their deadline, whose VMs this run released first; and (C(kind=overlay)) overlays
      left by dead runs on this run's VMs, committed first (C(result) V(committed), V(deferred) for a VM shut off,
      ...).
  returned: always
  type: list
  elements: dict
watchdog_pid:
  description: Process id of the run's watchdog on the host.
  returned: when the fence ran
  type: int
lock_takeovers:
  description: Stale locks of other runs this run took over.
  returned: when the fence ran
  type: list
  elements: dict
recovered_snapshots:
  description:
    - What the pre-flight found left by dead runs on the volumes, before the fence. C(marked_late) the pending
      snapshots whose C(until) had passed, now marked late; C(removed_cgs) the temporary consistency groups of dead
      runs it deleted.
  returned: when the pre-flight reached the controller
  type: dict
trust:
  description:
    - What the run recorded in the snapshot comment. V(good) confirmed; V(pending) left for the caller to confirm
      (O(confirm=false)); V(late) marked late (crash-consistent, never a backup); V(pending_late) the snapshot was
      still running after the release and stays pending until a recovery marks it; V(confirm_failed) taken in the
      window but the confirm call failed (not a backup).
  returned: always
  type: str
  sample: good
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmsnap.core.plugins.module_utils import _backup_run, _libvirt_args
from ansible_collections.kvmsnap.core.plugins.module_utils._backup_overlay import DEFAULT_FENCE
from ansible_collections.kvmsnap.core.plugins.module_utils._defaults import DEFAULT_CONFIRM_GRACE
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_args import FENCE_LIMITED, FENCES, fence_argument_spec
from ansible_collections.kvmsnap.core.plugins.module_utils._storage_map import DATASTORES_SPEC
from ansible_collections.kvmsnap.core.plugins.module_utils._vm_module import run_vm_module

ARGUMENT_SPEC = fence_argument_spec(
    uri=_libvirt_args.uri_option(),
    vms=dict(type="list", elements="str", required=True),
    volumes=dict(type="list", elements="str"),
    datastores=DATASTORES_SPEC,
    vm_mapping=dict(type="raw"),
    kvm_host=dict(type="str"),
    name=dict(type="str"),
    comment=dict(type="str"),
    snapmirror_label=dict(type="str"),
    policy=dict(type="str", default="daily"),
    run_id=dict(type="str"),
    fence=dict(type="str", choices=FENCES, default=DEFAULT_FENCE),
    confirm=dict(type="bool", default=True),
    confirm_grace=dict(type="int", default=DEFAULT_CONFIRM_GRACE),
)


def run(module: AnsibleModule) -> dict:
    return _backup_run.run_backup(module.params, module.check_mode)


def main() -> None:
    run_vm_module(ARGUMENT_SPEC, run, limits=FENCE_LIMITED + ("confirm_grace",), ontap=True)


if __name__ == "__main__":
    main()
