#!/usr/bin/python
# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ontap_snapshot
short_description: Create, confirm, delete and prune consistent ONTAP snapshots over several volumes
version_added: 1.0.0
description:
  - Creates one snapshot O(name) on a list of O(volumes) of one controller as B(one consistent point in time)
    (consistency-group snapshot on REST with ONTAP 9.10.1+, C(cg-start)/C(cg-commit) or C(snapshot-multicreate)
    on ZAPI; a plain snapshot for a single volume).
  - The snapshot comment carries this collection's metadata (C(kvmsnap:v1 policy=... run=... host=... state=...)), so
    that pruning and listing only ever touch this collection's snapshots.
  - A backup snapshot is created C(state=pending); it counts as a backup only after its run confirmed it
    (O(state=confirmed), C(state=good)). A pending snapshot whose O(until) has passed is orphaned; O(state=recovered)
    marks it C(state=late consistency=crash). See "When is a snapshot a backup" in the backup documentation.
  - A snapshot that already exists on all volumes with this metadata (and, when O(run_id) is given, the same run id)
    is left alone (C(changed=false)). One that exists on some volumes only, without the metadata, or made by another
    run than O(run_id) makes the module fail; it is never overwritten nor taken over.
  - O(prune) deletes whole snapshot sets (the snapshots with one name across O(volumes)) of a policy by the retention
    rule; only good sets count toward O(prune.keep), the newest good set is never deleted, nor a snapshot of another
    tool; a set with a busy or owned member is kept on all its volumes and reported.
author:
  - kvmsnap.core contributors (@kvmsnap)
extends_documentation_fragment:
  - kvmsnap.core.ontap
  - kvmsnap.core.attributes
  - kvmsnap.core.attributes.actiongroup_ontap
attributes:
  check_mode:
    support: full
    details:
      - Reports the snapshots that would be created, deleted or pruned without any changing call.
  diff_mode:
    support: full
    details:
      - Per volume (C(svm:volume)), the names of the snapshots the task creates, deletes or prunes, before and after.
  idempotent:
    support: partial
    details:
      - With O(name) set, a second run changes nothing. Without O(name), every run creates a new snapshot, because
        the default name carries the time of the run.
      - O(state=confirmed) of a snapshot already in the requested state, and O(state=recovered) with nothing orphaned,
        change nothing.
options:
  svm:
    description:
      - SVM (vserver) of the entries of O(volumes) that do not name their own SVM.
    type: str
  volumes:
    description:
      - Volumes to snapshot, as C(volume) (with O(svm)) or C(svm:volume) (to span several SVMs of the controller).
    type: list
    elements: str
    required: true
  name:
    description:
      - Snapshot name. At most 255 characters from C([A-Za-z0-9_.-]), starting with a letter or C(_); reserved
        prefixes (C(hourly.), C(daily.), C(weekly.), C(monthly.), C(snapmirror.), C(vserverdr), C(smas),
        C(sm_created), C(ontap_ransom), C(.)) are refused.
      - Required with O(state=absent), O(state=confirmed) and O(state=verified). With O(state=present) it defaults to
        C(kvmsnap-<policy>_<UTC time>).
    type: str
  state:
    description:
      - V(present) creates the snapshot (then prunes if O(prune) is set).
      - V(absent) deletes the snapshot O(name) from every volume that has it (then prunes if O(prune) is set).
      - V(pruned) only prunes (O(prune) is required).
      - V(confirmed) records that run O(run_id) confirmed the pending snapshot O(name) on every volume; its comment
        becomes C(state=good) (or C(state=late) with O(mark=late)) with O(consistency). The snapshot must exist on
        every volume with this collection's metadata and O(run_id); otherwise the module fails and changes nothing.
      - V(recovered) marks every pending snapshot of this collection on O(volumes) whose O(until) has passed as
        C(state=late consistency=crash), and deletes temporary consistency groups (C(kvmsnap_tmp_<until>_*)) of
        dead runs on the volumes' SVMs (those of a live run, O(until) in the future, are kept).
      - V(verified) (added in 1.1.0) records in the comment of the good snapshot O(name) on every volume that
        kvmsnap.core.verify booted its VMs, as C(verified=<UTC time>) (O(verified_at)); an earlier token is
        replaced, the rest of the comment is kept. A snapshot that is not a good backup of this collection is refused
        and nothing changes.
    type: str
    choices: [present, absent, pruned, confirmed, recovered, verified]
    default: present
  comment:
    description:
      - Free text appended to the metadata in the snapshot comment (the whole comment is at most 255 characters).
    type: str
  snapmirror_label:
    description:
      - SnapMirror label of the new snapshot, used by SnapVault policies to choose what to transfer.
    type: str
  policy:
    description:
      - Retention policy recorded in the snapshot metadata (for example V(daily)); 1-32 characters from C([A-Za-z0-9_]).
      - Defaults to O(prune.policy) when O(prune) is set, else V(manual); V(prerestore) with O(purpose=safety).
      - V(prerestore) is reserved for the restore role's safety snapshots and refused with O(purpose=backup).
    type: str
  purpose:
    description:
      - V(backup) creates a backup snapshot C(state=pending), to be confirmed by its run (O(state=confirmed)).
      - V(safety) creates a safety snapshot (the restore role's copy before it overwrites anything) directly as
        C(state=good) with O(consistency) (default V(crash)); it is what was on disk, confirmed by construction.
    type: str
    choices: [backup, safety]
    default: backup
  run_id:
    description:
      - Run identifier recorded in the metadata. Defaults to the UTC time of the run with O(state=present).
      - Required with O(state=confirmed); only the run that created a snapshot confirms it.
    type: str
  until:
    description:
      - With O(state=present), the epoch second after which the run creating the snapshot can no longer confirm it
        (its deadline). Recorded in the comment of a pending snapshot and in the name of a temporary consistency
        group; after it, O(state=recovered) marks the snapshot late and deletes the group.
      - Defaults to one hour after the module starts.
    type: int
  mark:
    description:
      - With O(state=confirmed), the trust state to record, V(good) (the run verified the snapshot) or V(late)
        (the run gave it up, e.g. it came after the deadline; crash-consistent).
    type: str
    choices: [good, late]
    default: good
  consistency:
    description:
      - With O(state=confirmed) or O(purpose=safety), the consistency level reached, recorded in the comment.
      - Defaults to V(crash) with O(mark=late) and O(purpose=safety); with O(mark=good) the comment keeps none.
    type: str
    choices: [offline, application, filesystem, suspended, crash]
  verified_at:
    description:
      - With O(state=verified), the UTC time to record (C(YYYYMMDDTHHMMSSZ)); defaults to now.
    type: str
    version_added: 1.1.0
  kvm_host:
    description:
      - KVM host name recorded in the metadata.
    type: str
  prune:
    description:
      - Delete this collection's snapshot sets of O(prune.policy) by the retention rule, whole sets at a time.
    type: dict
    suboptions:
      policy:
        description:
          - Policy whose snapshots are pruned.
        type: str
        required: true
      keep:
        description:
          - How many good snapshot sets of that policy to keep (1-1023); pending, late and old-format (no state)
            sets do not count. Late sets older than the oldest kept good set are deleted, newer ones kept; pending
            sets whose run may still confirm them are never deleted.
        type: int
        required: true
      prefix:
        description:
          - Name prefix of this collection's snapshots; only snapshots with this prefix and the metadata are pruned
            (and, with O(state=recovered), marked late).
        type: str
        default: kvmsnap
      exclude:
        description:
          - Snapshot names never pruned, e.g. the safety snapshots of restores that are not finished.
        type: list
        elements: str
        default: []
seealso:
  - module: kvmsnap.core.ontap_snapshot_info
  - module: kvmsnap.core.ontap_snapmirror
"""

EXAMPLES = r"""
- name: One consistent snapshot over two datastore volumes, then keep 7 daily snapshots
  kvmsnap.core.ontap_snapshot:
    hostname: cluster1.example.com
    username: backup
    password: "{{ ontap_password }}"
    ca_path: /etc/pki/ontap-ca.pem
    svm: svm1
    volumes: [vol_ds1, vol_ds2]
    policy: daily
    snapmirror_label: daily
    prune:
      policy: daily
      keep: 7
  delegate_to: localhost

- name: Volumes in two SVMs, explicit name
  kvmsnap.core.ontap_snapshot:
    hostname: cluster1.example.com
    volumes: ["svm1:vol_ds1", "svm2:vol_db"]
    name: kvmsnap-manual_20260101T000000Z
  delegate_to: localhost

- name: A backup run creates a pending snapshot, then confirms it once it verified it
  kvmsnap.core.ontap_snapshot:
    hostname: cluster1.example.com
    svm: svm1
    volumes: [vol_ds1, vol_ds2]
    name: kvmsnap-daily_20260101T020000Z
    policy: daily
    run_id: backup-20260101T020000Z-1a2b
    until: 1767233100
  delegate_to: localhost

- name: Confirm it (the VMs were suspended at the snapshot's point in time, the data is in it)
  kvmsnap.core.ontap_snapshot:
    hostname: cluster1.example.com
    svm: svm1
    volumes: [vol_ds1, vol_ds2]
    name: kvmsnap-daily_20260101T020000Z
    run_id: backup-20260101T020000Z-1a2b
    state: confirmed
    consistency: suspended
  delegate_to: localhost

- name: Mark what dead runs left pending as late, remove their temporary consistency groups, then prune
  kvmsnap.core.ontap_snapshot:
    hostname: cluster1.example.com
    svm: svm1
    volumes: [vol_ds1, vol_ds2]
    state: recovered
    prune:
      policy: daily
      keep: 7
  delegate_to: localhost

- name: Delete it again
  kvmsnap.core.ontap_snapshot:
    hostname: cluster1.example.com
    volumes: ["svm1:vol_ds1", "svm2:vol_db"]
    name: kvmsnap-manual_20260101T000000Z
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
snapshots:
  description: The snapshot on each volume (created, already present, or deleted).
  returned: always
  type: list
  elements: dict
  contains:
    svm:
      description: SVM of the volume.
      type: str
      sample: svm1
    volume:
      description: Volume name.
      type: str
      sample: vol_ds1
    name:
      description: Snapshot name.
      type: str
      sample: kvmsnap-daily_20260101T020000Z
    uuid:
      description: Snapshot UUID (null in check mode).
      type: str
      sample: 343b5227-8c6b-11eb-9ed1-005056b4c6d7
    create_time:
      description: Creation time, epoch seconds (null in check mode; absent with O(state=confirmed)).
      type: int
      sample: 1767232800
    state:
      description: Trust state recorded in the comment (with O(state=confirmed) only).
      type: str
      sample: good
    consistency:
      description: Consistency level recorded in the comment (with O(state=confirmed) only).
      type: str
      sample: suspended
    verified:
      description: The verified time recorded in the comment (with O(state=verified) only).
      type: str
      sample: 20260101T031500Z
      version_added: 1.1.0
    comment:
      description: The new comment (with O(state=verified) only).
      type: str
      sample: "kvmsnap:v1 policy=daily run=20260101T020000Z state=good verified=20260101T031500Z"
      version_added: 1.1.0
method:
  description:
    - How the snapshot was made; V(cg) (existing consistency group), V(cg_temporary), V(cg_start_commit),
      V(multicreate) or V(single) (in check mode, the method that would be used). Null when nothing was created.
  returned: always
  type: str
  sample: cg_temporary
pruned:
  description: Snapshots deleted (or that would be deleted in check mode) by O(prune).
  returned: always
  type: list
  elements: dict
  sample: [{"svm": "svm1", "volume": "vol_ds1", "name": "kvmsnap-daily_20251224T020000Z", "create_time": 1766541600}]
not_pruned:
  description:
    - Snapshots that O(prune) should have deleted but kept (busy or owned, or a member of such a set), with the
      C(reason). Named so that Ansible does not take it for its own C(skipped) flag.
  returned: always
  type: list
  elements: dict
  sample: [{"svm": "svm1", "volume": "vol_ds1", "name": "kvmsnap-daily_20251223T020000Z", "reason": "owned by snapmirror"}]
partial:
  description:
    - Snapshot sets that O(prune) could delete on some of their volumes only (ONTAP refused the rest); the members left
      are marked late, so they never count as a backup, and the next prune deletes them.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "kvmsnap-daily_20251223T020000Z", "deleted_on": ["svm1:vol_ds1"], "kept_on": ["svm1:vol_ds2"]}]
marked_late:
  description: With O(state=recovered), the orphaned pending snapshots marked (or, in check mode, to be marked) late.
  returned: always
  type: list
  elements: dict
  sample: [{"svm": "svm1", "volume": "vol_ds1", "name": "kvmsnap-daily_20251223T020000Z", "run": "backup-1"}]
removed_cgs:
  description: With O(state=recovered), the temporary consistency groups of dead runs deleted (or to be deleted).
  returned: always
  type: list
  elements: str
  sample: [kvmsnap_tmp_1767233100_0a1b2c3d4e5f]
msg:
  description: What was done.
  returned: always
  type: str
  sample: created snapshot kvmsnap-daily_20260101T020000Z on 2 volume(s) (cg_temporary)
transport:
  description: The API used (V(rest) or V(zapi)).
  returned: success
  type: str
  sample: rest
ontap_version:
  description: ONTAP release of the controller.
  returned: success
  type: str
  sample: 9.13.1
"""

import datetime
import time
from typing import Dict, List

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_args import OptionError, parse_volumes
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_interface import TEMP_CG_LIFETIME
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_module import (
    ontap_module,
    run_ontap_module,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_snapshot_ops import (
    confirm_snapshot_set,
    delete_snapshot_set,
    ensure_snapshot_set,
    mark_verified_set,
    prune,
    recover_orphans,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._retention import validate_keep
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import (
    CONSISTENCIES,
    DEFAULT_PREFIX,
    VERIFIED_RE,
    build_comment,
    default_name,
    validate_backup_policy,
    validate_policy,
    validate_prefix,
    validate_snapshot_name,
)

ARGUMENT_SPEC = {
    "svm": {"type": "str"},
    "volumes": {"type": "list", "elements": "str", "required": True},
    "name": {"type": "str"},
    "state": {"type": "str", "choices": ["present", "absent", "pruned", "confirmed", "recovered", "verified"],
              "default": "present"},
    "verified_at": {"type": "str"},
    "comment": {"type": "str"},
    "snapmirror_label": {"type": "str"},
    "policy": {"type": "str"},
    "purpose": {"type": "str", "choices": ["backup", "safety"], "default": "backup"},
    "run_id": {"type": "str"},
    "until": {"type": "int"},
    "mark": {"type": "str", "choices": ["good", "late"], "default": "good"},
    "consistency": {"type": "str", "choices": list(CONSISTENCIES)},
    "kvm_host": {"type": "str"},
    "prune": {"type": "dict", "options": {
        "policy": {"type": "str", "required": True},
        "keep": {"type": "int", "required": True},
        "prefix": {"type": "str", "default": "kvmsnap"},
        "exclude": {"type": "list", "elements": "str", "default": []},
    }},
}


def prepare(module):
    p = module.params
    volumes = parse_volumes(p["volumes"], p["svm"])
    state = p["state"]
    pr = p["prune"]
    if pr:
        validate_policy(pr["policy"], "prune.policy")
        validate_keep(pr["keep"], "prune.keep")
        validate_prefix(pr["prefix"], "prune.prefix")
    if state == "pruned" and not pr:
        raise OptionError("prune: required with state=pruned (give prune.policy and prune.keep).")
    if state in ("absent", "confirmed", "verified") and not p["name"]:
        raise OptionError("name: required with state=%s." % state)
    if state == "confirmed" and not p["run_id"]:
        raise OptionError("run_id: required with state=confirmed (the run that created snapshot %s)." % p["name"])
    safety = p["purpose"] == "safety"
    policy = p["policy"] or ("prerestore" if safety else pr["policy"] if pr else "manual")
    if safety or state != "present":
        validate_policy(policy, "policy")
    else:
        validate_backup_policy(policy, "policy")  # a backup never takes a name the collection uses itself
    name = p["name"]
    comment = None
    until = None
    if state == "verified":
        when = p["verified_at"] or datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        if not VERIFIED_RE.match(when):
            raise OptionError("verified_at: %r; allowed: a UTC time YYYYMMDDTHHMMSSZ." % (when,))
        p["verified_at"] = when
    if state == "present":
        if name is None:
            name = default_name(policy, prefix=pr["prefix"] if pr else DEFAULT_PREFIX)
        run_id = p["run_id"] or datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        until = p["until"] if p["until"] is not None else int(time.time()) + TEMP_CG_LIFETIME
        if safety:
            # what was on disk before a restore overwrote it: confirmed by construction
            comment = build_comment(policy, run_id, p["kvm_host"], p["comment"], state="good",
                                    consistency=p["consistency"] or "crash")
        else:
            comment = build_comment(policy, run_id, p["kvm_host"], p["comment"], state="pending", until=until)
    if name is not None:
        validate_snapshot_name(name, "name")
    return {"volumes": volumes, "name": name, "comment": comment, "until": until}


def execute(module, client, prep):
    p = module.params
    check = module.check_mode
    result = {"changed": False, "snapshots": [], "method": None, "pruned": [], "not_pruned": [], "partial": [],
              "marked_late": [], "removed_cgs": [], "msg": ""}
    msgs = []
    created = False
    if p["state"] == "present":
        res = ensure_snapshot_set(client, prep["volumes"], prep["name"], prep["comment"], p["snapmirror_label"], check,
                                  until=prep["until"], same_run_only=p["run_id"] is not None)
        result.update(changed=res["changed"], snapshots=res["snapshots"], method=res["method"])
        created = res["changed"]
        msgs.append(res["msg"])
    elif p["state"] == "confirmed":
        res = confirm_snapshot_set(client, prep["volumes"], prep["name"], p["run_id"], state=p["mark"],
                                   consistency=p["consistency"], check_mode=check)
        result.update(changed=res["changed"], snapshots=res["snapshots"])
        msgs.append(res["msg"])
    elif p["state"] == "verified":
        res = mark_verified_set(client, prep["volumes"], prep["name"], p["verified_at"], check_mode=check)
        result.update(changed=res["changed"], snapshots=res["snapshots"])
        msgs.append(res["msg"])
    elif p["state"] == "recovered":
        res = recover_orphans(client, prep["volumes"], prefix=(p["prune"] or {}).get("prefix") or DEFAULT_PREFIX,
                              check_mode=check)
        result.update(changed=res["changed"], marked_late=res["marked_late"], removed_cgs=res["removed_cgs"])
        msgs.append(res["msg"])
    elif p["state"] == "absent":
        res = delete_snapshot_set(client, prep["volumes"], prep["name"], check)
        result.update(changed=res["changed"], snapshots=res["snapshots"])
        msgs.append(res["msg"])
    pr = p["prune"]
    if pr:
        exclude = ([prep["name"]] if prep["name"] and p["state"] == "present" else []) + list(pr["exclude"] or [])
        res = prune(client, prep["volumes"], pr["policy"], pr["keep"], prefix=pr["prefix"], check_mode=check,
                    exclude=exclude)
        result["pruned"] = res["pruned"]
        result["not_pruned"] = res["not_pruned"]
        result["partial"] = res["partial"]
        result["changed"] = result["changed"] or res["changed"]
        result["warnings"] = res["warnings"]
        verb = "would prune" if check else "pruned"
        counts = (verb, len(res["pruned"]), pr["policy"], len(res["not_pruned"]))
        msgs.append("%s %d snapshot(s) of policy %s, kept %d busy or owned" % counts)
    result["msg"] = "; ".join(msgs)
    if module._diff:
        result["diff"] = snapshot_diff(p["state"], created, result)
    return result


def snapshot_diff(state, created, result):
    """before/after: per volume the snapshot names this task touched."""
    before: Dict[str, List[str]] = {}
    after: Dict[str, List[str]] = {}

    def mark(item, was, will):
        ref = "%s:%s" % (item["svm"], item["volume"])
        before.setdefault(ref, [])
        after.setdefault(ref, [])
        if was:
            before[ref].append(item["name"])
        if will:
            after[ref].append(item["name"])
    for item in result["snapshots"]:
        if state in ("confirmed", "recovered", "verified"):
            continue
        if state == "present":
            mark(item, not created, True)
        else:
            mark(item, True, False)
    for item in result["pruned"]:
        mark(item, True, False)
    for item in result["not_pruned"]:
        mark(item, True, True)
    return {"before": before, "after": after}


def main():
    module = ontap_module(ARGUMENT_SPEC, required_if=[("state", "absent", ["name"]), ("state", "pruned", ["prune"]),
                                                      ("state", "confirmed", ["name", "run_id"]),
                                                      ("state", "verified", ["name"])])
    run_ontap_module(module, "ontap_snapshot", prepare, execute)


if __name__ == "__main__":
    main()
