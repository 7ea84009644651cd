#!/usr/bin/python
# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ontap_snapmirror
short_description: Update the SnapMirror/SnapVault relationships of volumes
version_added: 1.0.0
description:
  - Starts a transfer on every SnapMirror/SnapVault relationship whose source is one of O(volumes) (optionally of a
    given O(snapshot)), and waits up to O(wait_timeout) seconds for it; then reports the health of those
    relationships.
  - M(kvmsnap.core.ontap_snapmirror_info) only reports their health (Snap Creator's dpstatus).
  - Volumes without relationships are reported in RV(volumes_without_relationships), not as an error.
  - A failed update makes the module fail, naming the relationship and what to do next.
  - Relationships are read on the controller given by O(hostname). A relationship lives on its destination
    cluster; one a peer cluster holds for these volumes (seen here with C(list_destinations_only)) cannot be
    started from the source cluster, so it is reported in RV(not_updated) with C(held_by) naming that cluster
    and a warning; run the update with a controller of that cluster (REST only).
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
      - Always starts a transfer.
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
      - V(updated) transfers. Required, so that a task written for the former default V(status) (now
        M(kvmsnap.core.ontap_snapmirror_info)) fails instead of starting transfers.
    type: str
    choices: [updated]
    required: true
  snapshot:
    description:
      - Source snapshot to transfer (default is what the policy selects).
    type: str
  label:
    description:
      - Vault relationships whose policy has no rule for this SnapMirror label are not updated (RV(not_updated)).
    type: str
  types:
    description:
      - The kinds of relationship to update; the others are reported in RV(not_updated).
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
  - module: kvmsnap.core.ontap_snapmirror_info
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

"""

RETURN = r"""
relationships:
  description:
    - Health of the relationships of O(volumes) after the update, with the keys of
      RV(kvmsnap.core.ontap_snapmirror_info#module:relationships).
  returned: always
  type: list
  elements: dict
updated:
  description: Relationships updated (or that would be, in check mode); same keys as RV(relationships).
  returned: always
  type: list
  elements: dict
  sample: []
not_updated:
  description:
    - Relationships not updated because of O(label) or O(types), or because another cluster holds them
      (C(held_by), the destination's cluster name; V(null) for this cluster), with a C(reason). Named so that
      Ansible does not take it for its own C(skipped) flag.
  returned: always
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
    snapmirror_update,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import validate_snapshot_name

ARGUMENT_SPEC = {
    "svm": {"type": "str"},
    "volumes": {"type": "list", "elements": "str", "required": True},
    "state": {"type": "str", "choices": ["updated"], "required": True},
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
    res = snapmirror_update(client, volumes, snapshot=p["snapshot"], label=p["label"], wait=p["wait"],
                            wait_timeout=p["wait_timeout"], check_mode=module.check_mode, types=p["types"])
    done = set(r["uuid"] for r in res["updated"])
    others = [relationship_status(r) for r in client.list_snapmirror(volumes) if r["uuid"] not in done] \
        if not module.check_mode else res["not_updated"]
    res["relationships"] = res["updated"] + [r for r in others if r["uuid"] not in done]
    res["healthy"] = all(r.get("healthy") is not False for r in res["relationships"])
    warnings = ["%s: SnapMirror/SnapVault %s -> %s is %s." % (client.hostname, r["source"], r["destination"], r["reason"])
                for r in res["not_updated"] if r.get("held_by")]
    if res["volumes_without_relationships"]:
        warnings.append("%s: no SnapMirror/SnapVault relationship has source %s; nothing to update there." % (
            client.hostname, ", ".join(res["volumes_without_relationships"])))
    if warnings:
        res["warnings"] = warnings
    return res


def main():
    module = ontap_module(ARGUMENT_SPEC)
    run_ontap_module(module, "ontap_snapmirror", prepare, execute)


if __name__ == "__main__":
    main()
