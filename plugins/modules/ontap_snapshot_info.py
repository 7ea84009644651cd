#!/usr/bin/python
# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ontap_snapshot_info
short_description: List ONTAP snapshots of volumes with this collection's backup metadata
version_added: 1.0.0
description:
  - Lists the snapshots of O(volumes), or of every volume of O(svm), with their creation time, SnapMirror label,
    comment, state, busy flag and owners, and this collection's metadata parsed from the comment, with the
    snapshot's trust state (V(pending), V(good), V(late)); only good ones are backups.
  - With O(files), also looks up each of these paths (LUNs or files) inside the snapshot O(name), through ONTAP
    (not through an NFS mount), and returns whether it is there, its type and size, and the live LUN's size.
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
      - SVM of the entries of O(volumes) without their own SVM; without O(volumes), all volumes of this SVM are listed.
    type: str
  volumes:
    description:
      - Volumes to list, as C(volume) (with O(svm)) or C(svm:volume). Either O(volumes) or O(svm) is required.
    type: list
    elements: str
  name:
    description:
      - Only the snapshot with this name.
    type: str
  policy:
    description:
      - Only this collection's snapshots of this retention policy.
    type: str
  only_ours:
    description:
      - Only this collection's snapshots (name prefix C(kvmsnap-) and the metadata in the comment).
    type: bool
    default: false
  files:
    description:
      - Paths to look up inside the snapshot O(name) (required with this option), as C(svm:/vol/<volume>/<path>)
        or C(/vol/<volume>/<path>) with O(svm); for example the LUNs of a backup. Without O(volumes) the volumes
        of these paths are the ones listed.
      - A path that is a directory in the snapshot is also listed (REST only), see RV(files[].entries).
    type: list
    elements: str
  privileges:
    description:
      - Before listing, check that the login's role allows every call of these operations, and fail naming the
        user, the role, the API path (REST) or command directory (ZAPI) and the access it lacks. The role's
        privileges are read with GET C(/api/security/accounts) and C(/api/security/roles/{owner}/{name}/privileges)
        (REST) or C(security-login-get-iter) and C(security-login-role-get-iter) (ZAPI); when the login may not
        read its own role, the check is skipped with a warning. See docs/security.md for a role that passes.
    type: list
    elements: str
    choices: [read, snapshot_create, snapshot_modify, snapshot_delete, snapmirror_update, cg_create, file_restore,
              volume_restore, lun_restore, files_read, vault_restore]
  copies:
    description:
      - Also list the snapshots on the SnapMirror/SnapVault destinations of the volumes (RV(copies)), with where
        each copy lives, so that a backup pruned from the volume but kept in the vault can be found (and restored
        with M(kvmsnap.core.ontap_restore) O(kvmsnap.core.ontap_restore#module:source)).
      - Relationships are read from this controller; a destination volume it does not hold (another cluster's) is
        named in RV(copies_elsewhere) - list it with this module on that controller.
    type: bool
    default: false
    version_added: 1.1.0
seealso:
  - module: kvmsnap.core.ontap_snapshot
"""

EXAMPLES = r"""
- name: Our daily backups of two volumes
  kvmsnap.core.ontap_snapshot_info:
    hostname: cluster1.example.com
    username: backup
    password: "{{ ontap_password }}"
    svm: svm1
    volumes: [vol_ds1, vol_ds2]
    policy: daily
  delegate_to: localhost
  register: backups

- name: Is the LUN in the snapshot?
  kvmsnap.core.ontap_snapshot_info:
    hostname: cluster1.example.com
    name: kvmsnap-daily_20260101T020000Z
    files: ["svm1:/vol/vol_san/lun1"]
  delegate_to: localhost
  register: lun_check

- name: Every snapshot of every volume of svm1
  kvmsnap.core.ontap_snapshot_info:
    hostname: cluster1.example.com
    svm: svm1
  delegate_to: localhost
"""

RETURN = r"""
snapshots:
  description: Snapshots, oldest first per volume.
  returned: always
  type: list
  elements: dict
  contains:
    svm:
      description: SVM.
      type: str
      sample: svm1
    volume:
      description: Volume.
      type: str
      sample: vol_ds1
    name:
      description: Snapshot name.
      type: str
      sample: kvmsnap-daily_20260101T020000Z
    uuid:
      description: Snapshot UUID.
      type: str
      sample: 343b5227-8c6b-11eb-9ed1-005056b4c6d7
    create_time:
      description: Creation time, epoch seconds.
      type: int
      sample: 1767232800
    create_time_iso:
      description: Creation time, ISO 8601 UTC.
      type: str
      sample: "2026-01-01T02:00:00Z"
    snapmirror_label:
      description: SnapMirror label.
      type: str
      sample: daily
    comment:
      description: Snapshot comment.
      type: str
      sample: kvmsnap:v1 policy=daily run=20260101T020000Z host=kvm1 state=good consistency=suspended
    state:
      description: Snapshot state (V(valid), V(invalid), V(partial), ...).
      type: str
      sample: valid
    busy:
      description: Whether the snapshot is busy or owned (cannot be deleted now).
      type: bool
      sample: false
    owners:
      description: Owners of the snapshot (for example C(snapmirror)).
      type: list
      elements: str
      sample: []
    kvmsnap:
      description:
        - This collection's metadata parsed from the comment (C(policy), C(run), C(host), C(state), C(consistency),
          C(until), C(verified), C(extra)), or null for other snapshots.
      type: dict
      sample: {"policy": "daily", "run": "20260101T020000Z", "host": "kvm1", "state": "good",
               "consistency": "suspended", "until": null, "verified": null, "extra": null}
    trust:
      description:
        - Trust state of this collection's snapshot, from its comment. V(good) - a backup, its run confirmed it;
          V(pending) - created, not (yet) confirmed, never a backup; V(late) - its run could not confirm it in time
          (crash-consistent). Null for other snapshots and for this collection's snapshots written before trust
          states existed (treated like late ones).
      type: str
      sample: good
    consistency:
      description: Consistency level recorded when the snapshot was confirmed (V(offline), V(application),
        V(filesystem), V(suspended), V(crash)), or null.
      type: str
      sample: suspended
    good:
      description: Whether the snapshot is a backup (trust V(good) and the controller's state valid).
      type: bool
      sample: true
files:
  description: O(files) - per path, whether it is in the snapshot O(name) (empty without O(files)).
  returned: always
  type: list
  elements: dict
  contains:
    svm:
      description: SVM.
      type: str
      sample: svm1
    volume:
      description: Volume.
      type: str
      sample: vol_san
    path:
      description: The path as given (C(/vol/<volume>/<path>)).
      type: str
      sample: /vol/vol_san/lun1
    snapshot:
      description: Snapshot name.
      type: str
      sample: kvmsnap-daily_20260101T020000Z
    present:
      description: Whether the path exists in the snapshot.
      type: bool
      sample: true
    type:
      description: Its type in the snapshot as ONTAP reports it (V(lun), V(file), V(directory), ...), or null.
      type: str
      sample: lun
    size:
      description: Its size in the snapshot in bytes, or null.
      type: int
      sample: 8388608
    lun_size:
      description: Size of the live LUN at this path in bytes, or null when there is no such LUN now.
      type: int
      sample: 8388608
    entries:
      description:
        - For a directory in the snapshot, its entries as ONTAP lists them (C(.) and C(..) left out), at most 4096;
          null for anything else, and with ZAPI. The names are read from storage and are not checked here.
      type: list
      elements: dict
      version_added: 1.1.0
      sample: [{"name": "0f8fad5b-d9cb-469f-a165-70867728950e", "type": "directory"}]
    entries_truncated:
      description: Whether the directory held more entries than RV(files[].entries) lists.
      type: bool
      version_added: 1.1.0
      sample: false
privileges:
  description: With O(privileges), the outcome of the check.
  returned: when O(privileges) is given
  type: dict
  contains:
    ok:
      description: Whether the role allows every call (also true when it could not be read).
      type: bool
    checked:
      description: Whether the role could be read and was checked.
      type: bool
    user:
      description: The login.
      type: str
    role:
      description: The login's role, or null when it could not be read.
      type: str
    missing:
      description: What the role lacks, as {operation, path, needed, has, decided_by}.
      type: list
      elements: dict
copies:
  description:
    - With O(copies), the snapshots on the volumes' SnapMirror/SnapVault destinations held by this controller,
      each with the keys of RV(snapshots) (C(svm) and C(volume) are the copy's) and where it lives.
  returned: when copies is true
  type: list
  elements: dict
  version_added: 1.1.0
  contains:
    copy_of:
      description: The volume the copy protects, C(svm:volume).
      type: str
      sample: svm1:vol_ds1
    location:
      description: The destination volume holding the copy, C(svm:volume).
      type: str
      sample: svm_dr:vol_ds1_vault
    kind:
      description: V(mirror) or V(vault), from the relationship's policy.
      type: str
      sample: vault
copies_elsewhere:
  description:
    - With O(copies), destinations this controller lists but does not hold, as {copy_of, location, kind, error}.
    - A destination another (peered) cluster holds also has C(cluster), that cluster's name; list it with a
      controller of that cluster.
  returned: when copies is true
  type: list
  elements: dict
  version_added: 1.1.0
volumes:
  description: The volumes that were listed, as C(svm:volume).
  returned: always
  type: list
  elements: str
  sample: ["svm1:vol_ds1", "svm1:vol_ds2"]
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

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_args import (
    OptionError,
    parse_volumes,
    validate_object_name,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_module import (
    ontap_module,
    run_ontap_module,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_privileges import OPERATIONS
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_snapshot_ops import (
    parse_snapshot_files,
    snapshot_copies,
    snapshot_files,
    snapshot_info,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_vault_restore import lost_primary_hint
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import validate_policy

ARGUMENT_SPEC = {
    "svm": {"type": "str"},
    "volumes": {"type": "list", "elements": "str"},
    "name": {"type": "str"},
    "policy": {"type": "str"},
    "only_ours": {"type": "bool", "default": False},
    "files": {"type": "list", "elements": "str"},
    "privileges": {"type": "list", "elements": "str", "choices": list(OPERATIONS)},
    "copies": {"type": "bool", "default": False},
}


def prepare(module):
    p = module.params
    files = parse_snapshot_files(p["files"], p["svm"]) if p["files"] else []
    if files and not p["name"]:
        raise OptionError("name: give the snapshot to look up the files in.")
    if files and not p["volumes"]:
        volumes = sorted({(f["svm"], f["volume"]) for f in files})
    elif p["volumes"]:
        volumes = parse_volumes(p["volumes"], p["svm"])
    elif p["svm"]:
        validate_object_name(p["svm"], "svm", "SVM")
        volumes = None
    else:
        raise OptionError("volumes or svm: give the volumes to list, or an svm to list all its volumes.")
    if p["policy"]:
        validate_policy(p["policy"], "policy")
    return volumes, files


def execute(module, client, prepared):
    p = module.params
    volumes, files = prepared
    checked = None
    if p["privileges"]:
        checked = client.privileges_for(p["privileges"])
        if not checked["ok"]:
            exc = OntapError(checked["message"], status=403, operation="pre-flight check of the ONTAP privileges",
                             hostname=client.hostname, hint=checked["hint"])
            exc.result = {"privileges": checked}
            raise exc
    if volumes is None:
        volumes = [(v["svm"] or p["svm"], v["name"]) for v in client.list_volumes(p["svm"])]
    try:
        snaps = snapshot_info(client, volumes, name=p["name"], policy=p["policy"], only_ours=p["only_ours"])
    except OntapError as exc:
        hint = lost_primary_hint(client, volumes) if exc.is_not_found else None
        if hint:
            exc.with_hint(hint)
        raise
    found = snapshot_files(client, p["name"], files) if files else []
    out = {"changed": False, "snapshots": snaps, "files": found, "volumes": ["%s:%s" % v for v in volumes]}
    if p["copies"]:
        out["copies"], out["copies_elsewhere"] = snapshot_copies(client, volumes, name=p["name"], policy=p["policy"],
                                                                 only_ours=p["only_ours"])
    if checked is not None:
        out["privileges"] = checked
    return out


def main():
    module = ontap_module(ARGUMENT_SPEC)
    run_ontap_module(module, "ontap_snapshot_info", prepare, execute)


if __name__ == "__main__":
    main()
