#!/usr/bin/python
# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ontap_snapshot
short_description: Create, delete and prune consistent ONTAP snapshots over several volumes
version_added: 1.0.0
description:
  - Creates one snapshot O(name) on a list of O(volumes) of one controller as B(one consistent point in time)
    (consistency-group snapshot on REST with ONTAP 9.10.1+, C(cg-start)/C(cg-commit) or C(snapshot-multicreate)
    on ZAPI; a plain snapshot for a single volume).
  - The snapshot comment carries this collection's metadata (C(kvmsnap:v1 policy=... run=... host=...)), so that
    pruning and listing only ever touch this collection's snapshots.
  - A snapshot that already exists on all volumes with this metadata is left alone (C(changed=false)). One that exists
    on some volumes only, or without the metadata, makes the module fail; it is never overwritten.
  - O(prune) deletes this collection's snapshots of a policy beyond a number to keep, per volume; it never deletes
    the newest good one nor a snapshot of another tool, and it skips busy or owned snapshots with a warning.
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
      - Required with O(state=absent). With O(state=present) it defaults to C(kvmsnap-<policy>_<UTC time>).
    type: str
  state:
    description:
      - V(present) creates the snapshot (then prunes if O(prune) is set).
      - V(absent) deletes the snapshot O(name) from every volume that has it (then prunes if O(prune) is set).
      - V(pruned) only prunes (O(prune) is required).
    type: str
    choices: [present, absent, pruned]
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
      - Defaults to O(prune.policy) when O(prune) is set, else V(manual).
    type: str
  run_id:
    description:
      - Run identifier recorded in the metadata. Defaults to the UTC time of the run.
    type: str
  kvm_host:
    description:
      - KVM host name recorded in the metadata.
    type: str
  prune:
    description:
      - Delete this collection's snapshots of O(prune.policy) beyond O(prune.keep), per volume.
    type: dict
    suboptions:
      policy:
        description:
          - Policy whose snapshots are pruned.
        type: str
        required: true
      keep:
        description:
          - How many of that policy's snapshots to keep per volume (1-1023). The newest good one is always kept.
        type: int
        required: true
      prefix:
        description:
          - Name prefix of this collection's snapshots; only snapshots with this prefix and the metadata are pruned.
        type: str
        default: kvmsnap
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
      description: Creation time, epoch seconds (null in check mode).
      type: int
      sample: 1767232800
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
skipped:
  description: Snapshots that O(prune) should have deleted but skipped (busy or owned), with the reason.
  returned: always
  type: list
  elements: dict
  sample: [{"svm": "svm1", "volume": "vol_ds1", "name": "kvmsnap-daily_20251223T020000Z", "reason": "owned by snapmirror"}]
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

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_args import OptionError, parse_volumes
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_module import (
    ontap_module,
    run_ontap_module,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_snapshot_ops import (
    delete_snapshot_set,
    ensure_snapshot_set,
    prune,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._retention import validate_keep
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import (
    build_comment,
    default_name,
    validate_policy,
    validate_prefix,
    validate_snapshot_name,
)

ARGUMENT_SPEC = {
    "svm": {"type": "str"},
    "volumes": {"type": "list", "elements": "str", "required": True},
    "name": {"type": "str"},
    "state": {"type": "str", "choices": ["present", "absent", "pruned"], "default": "present"},
    "comment": {"type": "str"},
    "snapmirror_label": {"type": "str"},
    "policy": {"type": "str"},
    "run_id": {"type": "str"},
    "kvm_host": {"type": "str"},
    "prune": {"type": "dict", "options": {
        "policy": {"type": "str", "required": True},
        "keep": {"type": "int", "required": True},
        "prefix": {"type": "str", "default": "kvmsnap"},
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
    if state == "absent" and not p["name"]:
        raise OptionError("name: required with state=absent.")
    policy = p["policy"] or (pr["policy"] if pr else "manual")
    validate_policy(policy, "policy")
    name = p["name"]
    comment = None
    if state == "present":
        if name is None:
            name = default_name(policy, prefix=pr["prefix"] if pr else "kvmsnap")
        run_id = p["run_id"] or datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        comment = build_comment(policy, run_id, p["kvm_host"], p["comment"])
    if name is not None:
        validate_snapshot_name(name, "name")
    return {"volumes": volumes, "name": name, "comment": comment}


def execute(module, client, prep):
    p = module.params
    check = module.check_mode
    result = {"changed": False, "snapshots": [], "method": None, "pruned": [], "skipped": [], "msg": ""}
    msgs = []
    created = False
    if p["state"] == "present":
        res = ensure_snapshot_set(client, prep["volumes"], prep["name"], prep["comment"], p["snapmirror_label"], check)
        result.update(changed=res["changed"], snapshots=res["snapshots"], method=res["method"])
        created = res["changed"]
        msgs.append(res["msg"])
    elif p["state"] == "absent":
        res = delete_snapshot_set(client, prep["volumes"], prep["name"], check)
        result.update(changed=res["changed"], snapshots=res["snapshots"])
        msgs.append(res["msg"])
    pr = p["prune"]
    if pr:
        exclude = [prep["name"]] if prep["name"] and p["state"] == "present" else []
        res = prune(client, prep["volumes"], pr["policy"], pr["keep"], prefix=pr["prefix"], check_mode=check,
                    exclude=exclude)
        result["pruned"] = res["pruned"]
        result["skipped"] = res["skipped"]
        result["changed"] = result["changed"] or res["changed"]
        result["warnings"] = res["warnings"]
        verb = "would prune" if check else "pruned"
        counts = (verb, len(res["pruned"]), pr["policy"], len(res["skipped"]))
        msgs.append("%s %d snapshot(s) of policy %s, skipped %d" % counts)
    result["msg"] = "; ".join(msgs)
    if module._diff:
        result["diff"] = snapshot_diff(p["state"], created, result)
    return result


def snapshot_diff(state, created, result):
    """before/after: per volume the snapshot names this task touched."""
    before, after = {}, {}

    def mark(item, was, will):
        ref = "%s:%s" % (item["svm"], item["volume"])
        before.setdefault(ref, [])
        after.setdefault(ref, [])
        if was:
            before[ref].append(item["name"])
        if will:
            after[ref].append(item["name"])
    for item in result["snapshots"]:
        if state == "present":
            mark(item, not created, True)
        else:
            mark(item, True, False)
    for item in result["pruned"]:
        mark(item, True, False)
    for item in result["skipped"]:
        mark(item, True, True)
    return {"before": before, "after": after}


def main():
    module = ontap_module(ARGUMENT_SPEC, required_if=[("state", "absent", ["name"]), ("state", "pruned", ["prune"])])
    run_ontap_module(module, "ontap_snapshot", prepare, execute)


if __name__ == "__main__":
    main()
