#!/usr/bin/python
# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vm_quiesce
short_description: Quiesce (suspend or freeze) a set of KVM/libvirt VMs in parallel, and release them again
version_added: 1.0.0
description:
  - With O(state=quiesced), quiesces all VMs in O(vms) at once (one thread per VM) by suspending them, freezing
    their guest filesystems through the QEMU guest agent, or both as O(mode=auto) decides, and records the
    consistency level each VM reached.
  - Every VM is resolved before any VM is touched; unknown VMs fail the task and are all named.
  - Writes a journal under O(state_dir) (what was done to which VM, the deadline) and starts a detached
    watchdog process on the host that releases the VMs by itself at the O(deadline), also when
    ansible-playbook, the network or the controller dies.
  - With O(state=released), resumes/thaws exactly what earlier vm_quiesce runs quiesced (never a VM the user
    paused); releasing a VM that already runs is a success. With O(run_id), only that run's quiesce is released
    (never another run's), every VM reports who released it and when (RV(vms[].released_by),
    RV(vms[].released_at)), and the run's remaining locks on the host are removed.
  - With O(state=locked), takes the per-VM locks for O(run_id) before a backup writes anything (manifests); a
    live lock of another run fails the task naming its holder. The locks expire after O(deadline) seconds if the
    run never releases them; a later O(state=quiesced) with the same O(run_id) reuses them.
  - A per-VM lock keeps two runs off the same VMs; a stale lock (dead owner, past its deadline) is reported
    and taken over. Every run first recovers what a dead run left quiesced and reports it in RV(recovered).
  - If quiescing fails for some VMs, the VMs already quiesced are released again and the task fails.
author:
  - kvmsnap.core contributors (@kvmsnap)
extends_documentation_fragment:
  - kvmsnap.core.libvirt
  - kvmsnap.core.fence
  - kvmsnap.core.attributes
attributes:
  check_mode:
    support: full
    details:
      - Validates the VMs, the state directory and the locks and reports what would be quiesced or released.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - O(state=released) is idempotent. O(state=quiesced) starts a new run each time.
options:
  vms:
    description:
      - The VMs, each by libvirt domain name or UUID.
      - Required with O(state=quiesced) and O(state=locked). With O(state=released), omitting it releases every
        VM that an open vm_quiesce run on this host (or the run O(run_id)) holds.
    type: list
    elements: str
  state:
    description:
      - V(quiesced) quiesces the VMs; V(released) releases what earlier runs quiesced; V(locked) only takes the
        run's locks on the VMs.
    type: str
    choices: [quiesced, released, locked]
    default: quiesced
  run_id:
    description:
      - The id of the backup run (journal name, lock owner, snapshot comment C(run=), report, manifests).
      - Required with O(state=locked). With O(state=quiesced) the journal and locks are kept under it (default
        a new id). With O(state=released) only this run's quiesce is released.
    type: str
  fence:
    description:
      - How O(state=quiesced) holds each VM's disks still for a snapshot taken by a later task
        (docs/how-it-works.md, "The fences").
      - V(direct) keeps the VM suspended or frozen until O(state=released) (or the watchdog at O(deadline)).
      - V(overlay) quiesces the VM only while its disks are switched to external qcow2 overlays beside their images
        (milliseconds) and releases it at once; the images no longer change and the VM runs during the snapshot.
        O(state=released) with the same O(run_id) commits the overlays back and deletes them; the watchdog does it
        at O(deadline) if that call never comes. A running VM that cannot take it (block/LUN, shareable, encrypted
        disks, a running block job, a transient VM, ...) fails the task before anything is touched.
      - V(auto) gives the overlay fence to every VM that can take it and the direct fence to the others; each VM
        says which it got and why (RV(vms[].fence), RV(vms[].fence_reason)). On libvirt's test driver every VM
        takes the direct fence.
      - The default is V(direct) here (a caller of this module may rely on the guests being held); the backup role
        passes C(kvmsnap_fence), default V(auto), and M(kvmsnap.core.vm_backup) defaults to V(auto).
    type: str
    choices: [direct, overlay, auto]
    default: direct
  missing:
    description:
      - With O(state=locked) only. V(fail) refuses VMs the host does not know; V(lock) also locks a UUID of
        O(vms) that no VM of the host has (a deleted VM that a restore re-creates; the lock is keyed by UUID).
    type: str
    choices: [fail, lock]
    default: fail
seealso:
  - module: kvmsnap.core.vm_backup
"""

EXAMPLES = r"""
- name: Freeze where the agent answers, suspend the rest; the watchdog releases after 2 minutes
  kvmsnap.core.vm_quiesce:
    vms: [web1, db1, 6695eb01-f6a4-8304-79aa-97f2502e193f]
    mode: auto
    deadline: 120
  register: fence

- name: Release them again
  kvmsnap.core.vm_quiesce:
    vms: [web1, db1, 6695eb01-f6a4-8304-79aa-97f2502e193f]
    state: released

- name: Overlay fence - each VM paused for milliseconds, its images unchanging until the release commits
  kvmsnap.core.vm_quiesce:
    vms: [web1, db1]
    fence: auto
    run_id: "{{ my_run_id }}"
    deadline: 300

# ... the array snapshot of the datastores (kvmsnap.core.ontap_snapshot) ...

- name: Release the VMs held by the direct fence, then commit and delete the overlays of the run
  kvmsnap.core.vm_quiesce:
    vms: [web1, db1]
    state: released
    run_id: "{{ my_run_id }}"
"""

RETURN = r"""
run_id:
  description: Id of the run (journal name, lock owner); null with O(state=released) or in check mode unless O(run_id) is given.
  returned: always
  type: str
  sample: quiesce-20261126T101500Z-1a2b3c4d
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
    prior_state:
      description: libvirt state before the run.
      type: str
      returned: with O(state=quiesced)
    action:
      description: What the run did (or would do) to the VM; V(suspended), V(frozen) or V(none).
      type: str
      returned: always
    consistency:
      description: Consistency level the VM's disks have while quiesced (C(filesystem), C(suspended), C(crash), C(offline)).
      type: str
      returned: with O(state=quiesced)
    detail:
      description: Why a VM was not quiesced, or which fallback was used.
      type: str
      returned: when relevant
    error:
      description: Why quiescing this VM failed.
      type: str
      returned: when relevant
    quiesce_ms:
      description: Milliseconds from the start of the parallel quiesce until this VM was quiesced.
      type: float
      returned: with O(state=quiesced), not in check mode
    release_result:
      description: V(resumed), V(thawed), V(already running), V(already thawed), V(gone), or why it was left as is.
      type: str
      returned: with O(state=released)
    released_by:
      description:
        - Who released the VM. V(release) this call (the run's release), V(watchdog) the run's watchdog at its
          deadline (or when the module process died), V(recovery) another run that found this run stale,
          V(none) the VM was not quiesced by the run (nothing to release).
        - A VM released by anyone but the run's own release may have run again before the snapshot was taken;
          the backup role counts it crash-consistent.
      type: str
      returned: with O(state=released), not in check mode
    released_by_detail:
      description: The longer record of who released the VM (run id, reason).
      type: str
      returned: when known
    released_at:
      description: Epoch seconds (on the KVM host) at which the VM was released; null when it was not quiesced.
      type: float
      returned: with O(state=released), not in check mode
    quiesced_at:
      description: Epoch seconds (on the KVM host) at which the VM was quiesced.
      type: float
      returned: when known
    pause_ms:
      description:
        - Milliseconds the VM was paused or frozen, from its quiesce (recorded in the run's journal) to its
          release, measured on the host. Null when this call did not release it.
        - Overlay VMs (O(state=quiesced)), from the quiesce to the release right after the overlay switch.
      type: float
      returned: with O(state=released); overlay VMs with O(state=quiesced)
    fence:
      description: The fence the VM got, V(direct) or V(overlay).
      type: str
      returned: with O(state=quiesced); overlay VMs with O(state=released) and O(run_id)
    fence_reason:
      description: Why (V(fence=direct), or why a VM could not take the overlay fence).
      type: str
      returned: with O(state=quiesced); overlay VMs with O(state=released) and O(run_id)
    overlay_at:
      description:
        - Overlay VMs, epoch seconds (on the KVM host) when their disks were switched to the overlays. From then
          until RV(vms[].commit_started_at) the base images hold the disks as of that instant; a snapshot whose
          create time lies in between captured that instant.
      type: float
      returned: overlay VMs
    commit_started_at:
      description: Overlay VMs, epoch seconds when the commit of the overlays began; null while not committed.
      type: float
      returned: overlay VMs with O(state=released) and O(run_id)
    overlays:
      description:
        - Overlay VMs with O(state=released) and O(run_id), one entry per disk as the run's journal records it,
          C(target), C(overlay) (the file), C(state) (V(committed) when the disk is back on its image), C(removed),
          C(attempts), C(error).
      type: list
      elements: dict
      returned: overlay VMs with O(state=released) and O(run_id)
  sample:
    - {name: web1, uuid: 6695eb01-f6a4-8304-79aa-97f2502e193f, prior_state: running, action: frozen,
       consistency: filesystem, quiesce_ms: 12.5}
consistency:
  description: The weakest consistency level over all VMs.
  returned: with O(state=quiesced), not in check mode
  type: str
  sample: filesystem
deadline:
  description: Epoch seconds at which the watchdog releases the VMs.
  returned: with O(state=quiesced), not in check mode
  type: float
deadline_utc:
  description: The deadline as UTC time.
  returned: with O(state=quiesced), not in check mode
  type: str
  sample: "2026-11-26T10:20:00Z"
watchdog_pid:
  description: Process id of the run's watchdog on the host (null for the test driver).
  returned: with O(state=quiesced), not in check mode
  type: int
lock_takeovers:
  description: Stale locks of other runs this run took over (holder and reason).
  returned: with O(state=quiesced) or O(state=locked), not in check mode
  type: list
  elements: dict
recovered:
  description: Runs found dead or past their deadline, whose VMs this run released first.
  returned: always
  type: list
  elements: dict
  sample:
    - {run_id: quiesce-20261126T101500Z-1a2b3c4d, reason: "its processes (module pid 4242) are gone",
       vms: [{name: web1, action: suspended, result: resumed}]}
runs:
  description: Run ids whose VMs were released (O(state=released)).
  returned: with O(state=released)
  type: list
  elements: str
unlocked:
  description: UUIDs of the VMs whose locks of O(run_id) were removed (O(state=released) with O(run_id)).
  returned: with O(state=released)
  type: list
  elements: str
overlays:
  description:
    - O(state=released) with O(run_id), when the run overlaid VMs on this host, one entry per overlay it committed
      (after releasing the direct VMs), C(uuid), C(name), C(target), C(overlay), C(result) (V(committed); V(VM gone),
      V(deferred) for a shut-off VM, or null when the commit failed, see C(error)), C(attempts), C(commit_ms),
      C(removed).
    - A failed commit is a warning, not a failure. The VM runs on its overlay and loses nothing; the journal keeps
      it pending for the watchdog and the next run.
  returned: with O(state=released) and O(run_id) when the run made overlays
  type: list
  elements: dict
expires:
  description: Epoch seconds at which the locks taken with O(state=locked) expire.
  returned: with O(state=locked), not in check mode
  type: float
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmsnap.core.plugins.module_utils import _fence_quiesce, _libvirt_args
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_args import FENCE_LIMITED, FENCES, fence_argument_spec
from ansible_collections.kvmsnap.core.plugins.module_utils._vm_module import run_vm_module

ARGUMENT_SPEC = _libvirt_args.libvirt_argument_spec(**fence_argument_spec(
    vms=dict(type="list", elements="str"),
    state=dict(type="str", choices=["quiesced", "released", "locked"], default="quiesced"),
    run_id=dict(type="str"),
    missing=dict(type="str", choices=["fail", "lock"], default="fail"),
    fence=dict(type="str", choices=FENCES, default="direct"),
))


def run(module: AnsibleModule) -> dict:
    p = module.params
    if p["state"] == "quiesced":
        return _fence_quiesce.run_quiesced(p, module.check_mode)
    if p["state"] == "locked":
        return _fence_quiesce.run_locked(p, module.check_mode)
    return _fence_quiesce.run_released(p, module.check_mode)


def main() -> None:
    run_vm_module(ARGUMENT_SPEC, run, limits=FENCE_LIMITED + ("retries",),
                  required_if=[("state", "quiesced", ("vms",)), ("state", "locked", ("vms", "run_id"))])


if __name__ == "__main__":
    main()
