#!/usr/bin/python
# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ontap_snapmirror
short_description: Update the SnapMirror/SnapVault relationships of volumes and report their health
version_added: 1.0.0
description:
  - With O(state=updated), starts a transfer on every SnapMirror/SnapVault relationship whose source is one of
    O(volumes) (optionally of a given O(snapshot)), and waits up to O(wait_timeout) seconds for it.
  - With O(state=status), reports the health of those relationships like Snap Creator's dpstatus (source,
    destination, mirror or vault, state, healthy, reason, lag, last transfer).
  - Volumes without relationships are reported in RV(volumes_without_relationships), not as an error.
  - A failed update makes the module fail, naming the relationship and what to do next.
  - Relationships are read on the controller given by O(hostname) (the destination cluster in most setups).
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
      - Reports the relationships that would be updated without starting a transfer.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - O(state=updated) always starts a transfer; O(state=status) changes nothing.
options:
  svm:
    description:
      - SVM of the entries of O(volumes) without their own SVM.
    type: str
  volumes:
    description:
      - Source volumes, as C(volume) (with O(svm)) or C(svm:volume).
    type: list
    elements: str
    required: true
  state:
    description:
      - V(updated) transfers; V(status) only reports (Snap Creator's dpstatus).
    type: str
    choices: [updated, status]
    default: status
  snapshot:
    description:
      - Source snapshot to transfer (default is what the policy selects).
    type: str
  label:
    description:
      - With O(state=updated), vault relationships whose policy has no rule for this SnapMirror label are not updated (RV(not_updated)).
    type: str
  types:
    description:
      - With O(state=updated), the kinds of relationship to update; the others are reported in RV(not_updated).
      - V(mirror) is SnapMirror (Snap Creator's C(NTAP_SNAPMIRROR_UPDATE)), V(vault) is SnapVault
        (C(NTAP_SNAPVAULT_UPDATE)); a mirror-vault policy counts as both.
    type: list
    elements: str
    choices: [mirror, vault]
    default: [mirror, vault]
  wait:
    description:
      - Wait for the transfers to finish.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for each transfer (1-86400).
    type: int
    default: 300
seealso:
  - module: kvmsnap.core.ontap_snapshot
"""

EXAMPLES = r"""
- name: Update the mirrors and vaults of the datastores after a backup
  kvmsnap.core.ontap_snapmirror:
    hostname: cluster2.example.com
    username: backup
    password: "{{ ontap_password }}"
    svm: svm1
    volumes: [vol_ds1, vol_ds2]
    state: updated
    label: daily
  delegate_to: localhost

- name: dpstatus
  kvmsnap.core.ontap_snapmirror:
    hostname: cluster2.example.com
    volumes: ["svm1:vol_ds1"]
  delegate_to: localhost
  register: dp
"""

RETURN = r"""
relationships:
  description: Health of the relationships of O(volumes) (after the update with O(state=updated)).
  returned: always
  type: list
  elements: dict
  contains:
    uuid:
      description: Relationship UUID (ZAPI - the destination path).
      type: str
      sample: b5ee4571-5429-11ec-9779-005056b3b72c
    source:
      description: Source path C(svm:volume).
      type: str
      sample: svm1:vol_ds1
    destination:
      description: Destination path C(svm:volume).
      type: str
      sample: svm1_dr:vol_ds1_dst
    type:
      description: V(mirror) or V(vault).
      type: str
      sample: vault
    policy:
      description: SnapMirror policy name.
      type: str
      sample: XDPDefault
    policy_type:
      description: Policy type as ONTAP reports it.
      type: str
      sample: vault
    state:
      description: Mirror state (V(snapmirrored), V(broken_off), V(uninitialized), ...).
      type: str
      sample: snapmirrored
    healthy:
      description: Whether ONTAP considers the relationship healthy.
      type: bool
      sample: true
    unhealthy_reason:
      description: Why it is not healthy.
      type: str
      sample: null
    lag_time:
      description: Lag in seconds.
      type: int
      sample: 3600
    transfer_state:
      description: State of the last or current transfer.
      type: str
      sample: success
    last_transfer_end:
      description: End of the last transfer, epoch seconds (when known).
      type: int
      sample: 1767232800
    last_transfer_end_iso:
      description: End of the last transfer, ISO 8601 UTC (when known).
      type: str
      sample: "2026-01-01T02:00:00Z"
    labels:
      description: SnapMirror labels of the policy's rules (what a vault transfers).
      type: list
      elements: str
      sample: [daily, weekly]
updated:
  description: Relationships updated (or that would be, in check mode); same keys as RV(relationships).
  returned: when state is updated
  type: list
  elements: dict
  sample: []
not_updated:
  description:
    - Relationships not updated because of O(label) or O(types), with a C(reason). Named so that Ansible does not
      take it for its own C(skipped) flag.
  returned: when state is updated
  type: list
  elements: dict
  sample: []
volumes_without_relationships:
  description: Volumes of O(volumes) that are the source of no relationship.
  returned: always
  type: list
  elements: str
  sample: ["svm1:vol_ds2"]
healthy:
  description: Whether all reported relationships are healthy.
  returned: always
  type: bool
  sample: true
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

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_args import OptionError, parse_volumes
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_module import (
    ontap_module,
    run_ontap_module,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_snapshot_ops import (
    relationship_status,
    snapmirror_info,
    snapmirror_update,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import validate_snapshot_name

ARGUMENT_SPEC = {
    "svm": {"type": "str"},
    "volumes": {"type": "list", "elements": "str", "required": True},
    "state": {"type": "str", "choices": ["updated", "status"], "default": "status"},
    "snapshot": {"type": "str"},
    "label": {"type": "str"},
    "types": {"type": "list", "elements": "str", "choices": ["mirror", "vault"], "default": ["mirror", "vault"]},
    "wait": {"type": "bool", "default": True},
    "wait_timeout": {"type": "int", "default": 300},
}


def prepare(module):
    p = module.params
    volumes = parse_volumes(p["volumes"], p["svm"])
    if p["snapshot"]:
        try:
            validate_snapshot_name(p["snapshot"], "snapshot")
        except ValueError as exc:
            if "reserved prefix" not in str(exc):
                raise
    if not p["types"]:
        raise OptionError("types: give at least one of mirror, vault (or leave it out for both).")
    if not 1 <= p["wait_timeout"] <= 86400:
        raise OptionError("wait_timeout: %r is out of range; expected 1-86400 seconds." % p["wait_timeout"])
    return volumes


def execute(module, client, volumes):
    p = module.params
    if p["state"] == "status":
        res = snapmirror_info(client, volumes)
        res["changed"] = False
        return res
    res = snapmirror_update(client, volumes, snapshot=p["snapshot"], label=p["label"], wait=p["wait"],
                            wait_timeout=p["wait_timeout"], check_mode=module.check_mode, types=p["types"])
    done = set(r["uuid"] for r in res["updated"])
    others = [relationship_status(r) for r in client.list_snapmirror(volumes) if r["uuid"] not in done] \
        if not module.check_mode else res["not_updated"]
    res["relationships"] = res["updated"] + [r for r in others if r["uuid"] not in done]
    res["healthy"] = all(r.get("healthy") is not False for r in res["relationships"])
    if res["volumes_without_relationships"]:
        res["warnings"] = ["%s: no SnapMirror/SnapVault relationship has source %s; nothing to update there." % (
            client.hostname, ", ".join(res["volumes_without_relationships"]))]
    return res


def main():
    module = ontap_module(ARGUMENT_SPEC)
    run_ontap_module(module, "ontap_snapmirror", prepare, execute)


if __name__ == "__main__":
    main()
