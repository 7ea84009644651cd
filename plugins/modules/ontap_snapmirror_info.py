#!/usr/bin/python
# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ontap_snapmirror_info
short_description: Report the health of the SnapMirror/SnapVault relationships of volumes
version_added: 1.0.0
description:
  - Reports the health of every SnapMirror/SnapVault relationship whose source is one of O(volumes), like Snap
    Creator's dpstatus (source, destination, mirror or vault, state, healthy, reason, lag, last transfer).
  - Volumes without relationships are reported in RV(volumes_without_relationships), not as an error.
  - Relationships are read on the controller given by O(hostname) (the destination cluster in most setups).
  - M(kvmsnap.core.ontap_snapmirror) starts the transfers.
author:
  - kvmsnap.core contributors (@kvmsnap)
extends_documentation_fragment:
  - kvmsnap.core.ontap
  - kvmsnap.core.attributes
  - kvmsnap.core.attributes.actiongroup_ontap
  - kvmsnap.core.attributes.info_module
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
seealso:
  - module: kvmsnap.core.ontap_snapmirror
"""

EXAMPLES = r"""
- name: dpstatus
  kvmsnap.core.ontap_snapmirror_info:
    hostname: cluster2.example.com
    username: backup
    password: "{{ ontap_password }}"
    volumes: ["svm1:vol_ds1"]
  delegate_to: localhost
  register: dp
"""

RETURN = r"""
relationships:
  description: Health of the relationships of O(volumes).
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
    held_by:
      description:
        - The name of the cluster that holds the relationship when that is another (peered) cluster, the
          destination's, which lists it here with C(list_destinations_only) (REST); V(null) for a relationship
          this cluster holds. Its policy and labels are that cluster's and may not be known here.
      type: str
      sample: dr-cluster
      version_added: 1.1.0
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

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_args import parse_volumes
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_module import (
    ontap_module,
    run_ontap_module,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_snapshot_ops import snapmirror_info

ARGUMENT_SPEC = {
    "svm": {"type": "str"},
    "volumes": {"type": "list", "elements": "str", "required": True},
}


def prepare(module):
    return parse_volumes(module.params["volumes"], module.params["svm"])


def execute(module, client, volumes):
    res = snapmirror_info(client, volumes)
    res["changed"] = False
    return res


def main():
    module = ontap_module(ARGUMENT_SPEC)
    run_ontap_module(module, "ontap_snapmirror_info", prepare, execute)


if __name__ == "__main__":
    main()
