#!/usr/bin/python
# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ontap_restore
short_description: Restore files or LUNs (or, when confirmed, a whole volume) from an ONTAP snapshot
version_added: 1.0.0
description:
  - Restores O(files) (paths inside the volume) and O(luns) of O(volume) from O(snapshot) in place (single-file
    SnapRestore). REST uses the native C(restore_to) volume PATCH on ONTAP 9.10.1+, the private CLI passthrough
    C(volume snapshot restore-file) before; LUNs are overwritten as clones of their snapshot copy. ZAPI uses
    C(snapshot-restore-file).
  - With O(mode=volume) the whole volume is reverted to the snapshot (volume SnapRestore). This needs
    O(confirm_volume_restore=true), because every change since the snapshot is lost, newer snapshots are deleted
    and SnapMirror relationships of the volume must be updated or resynced afterwards.
  - The snapshot is checked to exist before anything is done. Paths are normalised and confined to the volume.
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
      - Reports the files, LUNs or volume that would be restored without any changing call.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - A restore is an action; it always restores and reports C(changed=true).
options:
  svm:
    description:
      - SVM of O(volume) (unless O(volume) is given as C(svm:volume)).
    type: str
  volume:
    description:
      - Volume to restore in, as C(volume) (with O(svm)) or C(svm:volume).
    type: str
    required: true
  snapshot:
    description:
      - Snapshot to restore from.
    type: str
    required: true
  files:
    description:
      - Files to restore, as paths inside the volume (C(images/vm1.qcow2), C(/images/vm1.qcow2) or
        C(/vol/<volume>/images/vm1.qcow2)). C(..), C(.snapshot) components, NUL and paths outside the volume are
        refused.
    type: list
    elements: str
    default: []
  restore_paths:
    description:
      - Files to restore to another path in the same volume, as a mapping of the file's path in the snapshot to the
        new path (both inside O(volume), in the forms of O(files)); the file at the source path is not touched.
      - Every source must be a file in O(snapshot), and nothing may exist at any destination (checked for all
        entries before the first restore, also in check mode); C(..), C(.snapshot) components, paths outside the
        volume, a destination equal to a source, to a file of O(files) or to another destination are refused.
      - REST uses C(restore_to.restore_path) (ONTAP 9.10.1+) or the CLI passthrough's C(restore_path); ZAPI
        C(snapshot-restore-file) with C(restore-path).
    type: dict
    default: {}
    version_added: 1.1.0
  luns:
    description:
      - LUNs to restore, as C(/vol/<volume>/[qtree/]lun) or a path relative to the volume.
    type: list
    elements: str
    default: []
  mode:
    description:
      - V(files) restores O(files) and O(luns); V(volume) reverts the whole volume (needs O(confirm_volume_restore)).
    type: str
    choices: [files, volume]
    default: files
  confirm_volume_restore:
    description:
      - Must be V(true) for O(mode=volume); a volume restore is refused otherwise.
    type: bool
    default: false
  force:
    description:
      - With O(mode=volume), ask ONTAP to restore even when it would otherwise refuse (for example newer snapshots
        with protective metadata).
    type: bool
    default: false
  source:
    description:
      - Restore O(files) from O(snapshot) as held on this SnapMirror/SnapVault destination of O(volume), given as
        C(svm:volume), instead of from the snapshot on O(volume) itself (which may have been pruned).
      - ONTAP's SnapMirror restore is used (REST only) - a restore relationship from O(source) to O(volume),
        transfers of at most 8 files each, then the relationship is deleted, also when a transfer failed.
      - O(source) must be listed as a destination of O(volume) by the controller, hold O(snapshot) and every file;
        no other restore into O(volume) may be under way. All of it is checked before anything is written.
      - Only with O(mode=files) and O(files), in place; not with O(luns) nor O(restore_paths).
    type: str
    version_added: 1.1.0
  destination_dir:
    description:
      - With O(source), write the restored files below this directory of O(volume) (each keeps its path below it,
        C(<destination_dir>/<path in the volume>)) instead of over the files themselves; for example to read a
        copy's manifests without touching the live ones. Same path rules as O(files).
    type: str
    version_added: 1.1.0
  source_controller:
    description:
      - With O(source), when O(source) lives on another cluster than O(hostname)'s (a SnapVault on a DR cluster,
        cluster- and SVM-peered with it), the connection options of a controller of that cluster, where the copy's
        snapshot and files are checked. The restore relationship and its transfers are still made on O(hostname)'s
        controller, as ONTAP requires (a restore relationship lives on the cluster of the volume restored into).
      - The same connection options as this module's own, without their environment fallbacks.
      - Without it, a copy another cluster holds is refused before anything is written, naming that cluster.
    type: dict
    version_added: 1.1.0
    suboptions:
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
        description: Password of O(source_controller.username).
        type: str
      cert_file:
        description: PEM client certificate for certificate authentication; requires O(source_controller.key_file).
        type: path
      key_file:
        description: PEM private key of O(source_controller.cert_file); must not be readable by group or others.
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
seealso:
  - module: kvmsnap.core.ontap_snapshot_info
"""

EXAMPLES = r"""
- name: Restore two disk images from last night's snapshot
  kvmsnap.core.ontap_restore:
    hostname: cluster1.example.com
    username: restore
    password: "{{ ontap_password }}"
    volume: svm1:vol_ds1
    snapshot: kvmsnap-daily_20260101T020000Z
    files:
      - images/vm1.qcow2
      - images/vm1_VARS.fd
  delegate_to: localhost

- name: Restore a disk image next to the original, as a new file (the original is not touched)
  kvmsnap.core.ontap_restore:
    hostname: cluster1.example.com
    volume: svm1:vol_ds1
    snapshot: kvmsnap-daily_20260101T020000Z
    restore_paths:
      images/vm1.qcow2: images/vm1-copy.qcow2
  delegate_to: localhost

- name: Restore a LUN
  kvmsnap.core.ontap_restore:
    hostname: cluster1.example.com
    svm: svm1
    volume: vol_san1
    snapshot: kvmsnap-daily_20260101T020000Z
    luns: [/vol/vol_san1/lun_vm2]
  delegate_to: localhost

- name: Restore a disk image from the vault copy of a pruned snapshot
  kvmsnap.core.ontap_restore:
    hostname: cluster1.example.com
    volume: svm1:vol_ds1
    source: svm_dr:vol_ds1_vault
    snapshot: kvmsnap-daily_20251201T020000Z
    files: [images/vm1.qcow2]
  delegate_to: localhost

- name: Revert the whole volume (every VM on it!)
  kvmsnap.core.ontap_restore:
    hostname: cluster1.example.com
    volume: svm1:vol_ds2
    snapshot: kvmsnap-daily_20260101T020000Z
    mode: volume
    confirm_volume_restore: true
  delegate_to: localhost
"""

RETURN = r"""
restored:
  description: What was restored (or would be, in check mode); on a failure of O(mode=files), what was restored
    before it.
  returned: always
  type: list
  elements: dict
  contains:
    type:
      description: V(file), V(lun) or V(volume).
      type: str
      sample: file
    path:
      description: Path inside the volume (C(/) for a volume restore; C(/vol/...) for a LUN).
      type: str
      sample: /images/vm1.qcow2
    restore_path:
      description: Where the file was restored to (only for entries of O(restore_paths)).
      type: str
      returned: for entries of O(restore_paths)
      sample: /images/vm1-copy.qcow2
      version_added: 1.1.0
    method:
      description:
        - How it was restored; V(rest_restore_to), V(cli_passthrough), V(rest_lun_clone), V(zapi),
          V(volume_snaprestore), V(snapmirror_restore) (from O(source)), or V(check_mode).
      type: str
      sample: rest_restore_to
failed_items:
  description:
    - The item whose restore failed (O(mode=files)); the items in RV(restored) were overwritten before it, the
      ones in RV(not_attempted) were not touched. Empty on success.
  returned: with O(mode=files), also on failure
  type: list
  elements: dict
  contains:
    type:
      description: V(file) or V(lun).
      type: str
    path:
      description: Path inside the volume, or the LUN path.
      type: str
    error:
      description: The ONTAP error.
      type: str
not_attempted:
  description: Items not restored because an earlier one failed (O(mode=files)); empty on success.
  returned: with O(mode=files), also on failure
  type: list
  elements: dict
deleted_snapshots:
  description: Snapshots newer than O(snapshot) that the volume restore deletes (O(mode=volume) only).
  returned: when mode is volume
  type: list
  elements: str
  sample: [kvmsnap-daily_20260102T020000Z]
msg:
  description: What was done.
  returned: always
  type: str
  sample: restored 2 item(s) of svm1:vol_ds1 from snapshot kvmsnap-daily_20260101T020000Z
source:
  description: The SnapMirror/SnapVault destination the files came from (C(svm:volume)), with O(source).
  returned: when source is given
  type: str
  sample: svm_dr:vol_ds1_vault
  version_added: 1.1.0
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
    CONNECTION_SUBOPTIONS,
    OptionError,
    parse_volumes,
    validate_connection,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_module import (
    ontap_module,
    run_ontap_module,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_paths import (
    PathError,
    lun_full_path,
    new_paths,
    normalize_paths,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_snapshot_ops import (
    restore_items,
    restore_whole_volume,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_vault_restore import restore_from_copy
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import validate_snapshot_name

ARGUMENT_SPEC = {
    "svm": {"type": "str"},
    "volume": {"type": "str", "required": True},
    "snapshot": {"type": "str", "required": True},
    "files": {"type": "list", "elements": "str", "default": []},
    "restore_paths": {"type": "dict", "default": {}},
    "luns": {"type": "list", "elements": "str", "default": []},
    "mode": {"type": "str", "choices": ["files", "volume"], "default": "files"},
    "confirm_volume_restore": {"type": "bool", "default": False},
    "force": {"type": "bool", "default": False},
    "source": {"type": "str"},
    "destination_dir": {"type": "str"},
    "source_controller": {"type": "dict", "options": CONNECTION_SUBOPTIONS},
}


def _snapshot_name(name):
    # Restoring from ONTAP's own snapshots (hourly.*, daily.*) is allowed: only the character rules apply.
    try:
        validate_snapshot_name(name, "snapshot")
    except ValueError as exc:
        if "reserved prefix" not in str(exc):
            raise
    return name


def prepare(module):
    p = module.params
    svm, volume = parse_volumes([p["volume"]], p["svm"], "volume")[0]
    _snapshot_name(p["snapshot"])
    if p["mode"] == "volume":
        if p["files"] or p["luns"] or p["restore_paths"]:
            raise OptionError("files/luns/restore_paths: not allowed with mode=volume (the whole volume is restored).")
        if not p["confirm_volume_restore"]:
            raise OptionError(
                "confirm_volume_restore: a volume restore of %s:%s reverts EVERY file in the volume (all VMs on it) to "
                "snapshot %s, deletes all newer snapshots and breaks SnapMirror updates until they are resynced; set "
                "confirm_volume_restore: true to do it, or restore single files with mode: files." % (
                    svm, volume, p["snapshot"]))
        return {"svm": svm, "volume": volume, "files": [], "luns": [], "restore_paths": []}
    source = None
    if p["source"] is not None:
        if ":" not in p["source"]:
            raise OptionError("source: give the SnapMirror/SnapVault destination to restore from as 'svm:volume' "
                              "(got %r)." % p["source"])
        source = parse_volumes([p["source"]], None, "source")[0]
        if p["mode"] == "volume" or p["luns"] or p["restore_paths"] or not p["files"]:
            raise OptionError("source: restores files in place only (mode: files, files given, no luns or "
                              "restore_paths); a volume or LUN cannot be restored from %s." % p["source"])
        if source == (svm, volume):
            raise OptionError("source: %s is the volume itself; give its SnapMirror/SnapVault destination, or leave "
                              "source out to restore from the volume's own snapshot." % p["source"])
    if p["source_controller"] is not None:
        if source is None:
            raise OptionError("source_controller: only with source (the copy another cluster holds).")
        try:
            validate_connection(dict(p["source_controller"]))
        except OptionError as exc:
            raise OptionError("source_controller.%s" % exc) from None
    if not p["files"] and not p["luns"] and not p["restore_paths"]:
        raise OptionError("files/luns/restore_paths: give at least one file or LUN to restore (or mode: volume).")
    files = normalize_paths(p["files"], volume, "files") if p["files"] else []
    if source is not None:
        dest_dir = normalize_paths([p["destination_dir"]], volume, "destination_dir")[0] if p["destination_dir"] else None
        return {"svm": svm, "volume": volume, "files": files, "luns": [], "restore_paths": [], "source": source,
                "destination_dir": dest_dir}
    if p["destination_dir"]:
        raise OptionError("destination_dir: only with source (a restore from a SnapMirror/SnapVault destination); "
                          "restore_paths restores a file of the volume's own snapshot to another path.")
    moved = new_paths(p["restore_paths"], volume, files)
    luns = []
    for index, lun in enumerate(p["luns"]):
        full = lun_full_path(lun, volume, "luns", index)
        if full in luns:
            raise PathError("luns[%d]: %r is given twice." % (index, lun))
        luns.append(full)
    return {"svm": svm, "volume": volume, "files": files, "luns": luns, "restore_paths": moved}


def execute(module, client, prep):
    p = module.params
    svm, volume = prep["svm"], prep["volume"]
    check = module.check_mode
    if p["mode"] == "volume":
        res = restore_whole_volume(client, svm, volume, p["snapshot"], force=p["force"], check_mode=check)
        verb = "would restore" if check else "restored"
        res["msg"] = "%s volume %s:%s to snapshot %s" % (verb, svm, volume, p["snapshot"])
        return res
    verb = "would restore" if check else "restored"
    if prep.get("source"):
        copy_client = connect(dict(p["source_controller"]), "ontap_restore") if p["source_controller"] else None
        res = restore_from_copy(client, svm, volume, prep["source"], p["snapshot"], prep["files"], check_mode=check,
                                timeout=max(client.timeout, 300), destination_dir=prep["destination_dir"],
                                copy_client=copy_client)
        res["msg"] = "%s %d file(s) of %s:%s from snapshot %s on %s" % (
            verb, len(res["restored"]), svm, volume, p["snapshot"], res["source"])
        return res
    res = restore_items(client, svm, volume, p["snapshot"], prep["files"], prep["luns"], check_mode=check,
                        restore_paths=prep["restore_paths"])
    res["msg"] = "%s %d item(s) of %s:%s from snapshot %s" % (verb, len(res["restored"]), svm, volume, p["snapshot"])
    return res


def main():
    module = ontap_module(ARGUMENT_SPEC)
    run_ontap_module(module, "ontap_restore", prepare, execute)


if __name__ == "__main__":
    main()
