#!/usr/bin/python
# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_manifest
short_description: Write, verify and prune the backup manifests of KVM VMs (domain XML, NVRAM, disk map)
version_added: 1.0.0
description:
  - With O(state=present), writes each VM's manifest (inactive domain XML from libvirt, a copy of its NVRAM, the
    disk map, the consistency level asked for, the KVM host and the run id) into C(<datastore>/.kvmsnap/<uuid>/) of
    every datastore the VM uses, before the snapshot, so that the snapshot carries it; and a copy into the local
    catalog C(<state_dir>/catalog/<snapshot>/<uuid>/) (the only copy for VMs on SAN LUNs).
  - With O(state=verified), checks that each VM of O(vms) is really in the snapshot O(snapshot), through the NFS
    C(<datastore>/.snapshot/<snapshot>/) view - its manifest (parses, names this VM, this snapshot and O(run_id)),
    C(domain.xml), the saved NVRAM, and every file disk as a regular file (no symlink inside the snapshot),
    non-empty and, with O(compare_live), as large as the live image for raw disks. Read-only; it never fails by
    itself, it returns C(verified) (the backup role reports VMs whose data is missing as not protected; the
    restore role refuses them before anything is touched). Disks on LUNs cannot be seen from the KVM host; they
    are checked against O(lun_files), the controllers' answers (M(kvmsnap.core.ontap_snapshot_info) with
    O(kvmsnap.core.ontap_snapshot_info#module:files)).
  - With O(state=present) and O(manifest_key), each manifest carries an HMAC-SHA256 signature (see docs/security.md).
  - M(kvmsnap.core.backup_manifest_info) reads the manifests of a snapshot back (and checks them), and lists the
    volumes of the local catalog.
  - Files are written atomically, mode 0600 in 0700 directories. The XML is the inactive definition without secrets.
author:
  - kvmsnap.core contributors (@kvmsnap)
extends_documentation_fragment:
  - kvmsnap.core.libvirt
  - kvmsnap.core.attributes
attributes:
  check_mode:
    support: full
    details:
      - With O(state=present), reports which files would change without writing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Files whose content is unchanged are not rewritten.
options:
  state:
    description:
      - V(present) writes the manifests of O(vms); V(verified) checks that the manifests and disks of O(vms) are in
        O(snapshot);
        V(protected) lists, per snapshot of O(snapshots), the VMs whose manifests it carries and the snapshot and
        run each manifest names (to choose C(latest) per VM; nothing is checked beyond that); V(catalog_pruned)
        removes the local catalog entries of snapshots that are gone (see O(existing), O(listed), O(keep_days)).
    type: str
    choices: [present, verified, protected, catalog_pruned]
    default: present
  vms:
    description:
      - O(state=present) and O(state=verified) - the VMs, as the discover role's records (C(name), C(uuid),
        C(state), C(nvram), C(disks) with C(target), C(source), C(format), C(controller), C(svm), C(volume),
        C(datastore), C(path), C(lun)); O(state=verified) also takes the restore plan's entries (same keys).
    type: list
    elements: dict
    default: []
  snapshot:
    description:
      - Snapshot name the manifests belong to. Required with O(state=present) and O(state=verified).
    type: str
  snapshots:
    description:
      - O(state=protected) - snapshot names to list the manifests of.
    type: list
    elements: str
    default: []
  datastores:
    description:
      - O(state=protected) - datastore mount points to look in (C(<path>/.snapshot/<snapshot>/.kvmsnap)).
    type: list
    elements: path
    default: []
  state_dir:
    description:
      - Directory of the local catalog (C(<state_dir>/catalog/<snapshot>/<uuid>/)).
    type: path
    default: /var/lib/kvmsnap
  existing:
    description:
      - O(state=catalog_pruned) - the snapshots that exist on the volumes of O(listed).
    type: list
    elements: str
    default: []
  listed:
    description:
      - O(state=catalog_pruned) - the volumes (C(controller:svm:volume)) whose snapshots were all listed; an entry
        naming another volume is never removed for a missing snapshot.
    type: list
    elements: str
    default: []
  keep_days:
    description:
      - O(state=catalog_pruned) - also remove entries older than this many days (V(0) - never by age). The entry
        of O(snapshot) always stays.
    type: int
    default: 0
  run_id:
    description:
      - Run id recorded in the manifests.
    type: str
  policy:
    description:
      - Retention policy recorded in the manifests.
    type: str
  host:
    description:
      - KVM host (inventory name) recorded in the manifests.
    type: str
  consistency:
    description:
      - Quiesce mode asked for, recorded in the manifests (the level reached is in the run report).
    type: str
  config_dir:
    description:
      - Snap Creator C(KVM_VM_CONFIG_DIR), recorded in the manifests.
    type: path
  created:
    description:
      - Time of the run (ISO 8601), recorded in the manifests.
    type: str
  datastore_offsets:
    description:
      - O(state=protected) - where each of O(datastores) lies inside its volume (datastore path to junction offset,
        C(/)-prefixed, for example C(/images) for C(/srv/vol1/images)); a datastore not named is its volume's root.
      - The snapshot's copy of the manifests is then C(<volume root>/.snapshot/<snapshot>/<offset>/.kvmsnap).
    type: dict
    default: {}
  compare_live:
    description:
      - O(state=verified) - also compare the size of each raw disk image in the snapshot with the live image
        (right after a backup they are equal; a restore turns this off, the live image may have changed since).
    type: bool
    default: true
  lun_files:
    description:
      - O(state=verified) - what the controllers answered about the LUN disks of O(vms) in O(snapshot), per
        controller (inventory name), the C(files) list of M(kvmsnap.core.ontap_snapshot_info) with
        O(kvmsnap.core.ontap_snapshot_info#module:files), or
        the error text of a controller that could not be asked. A LUN disk must be in the snapshot (as large as
        the live LUN with O(compare_live)). Without this option LUN disks are not checked.
    type: dict
  manifest_key:
    description:
      - Key of the manifest signatures (HMAC-SHA256), at least 16 characters. O(state=present) signs with it,
        M(kvmsnap.core.backup_manifest_info) verifies with it. Keep it on the controller (vault, AWX credential); the roles pass
        C(kvmsnap_manifest_key) or the key file they create.
    type: str
"""

EXAMPLES = r"""
- name: Write the manifests before the snapshot
  kvmsnap.core.backup_manifest:
    vms: "{{ discover_vms | selectattr('protectable') | list }}"
    snapshot: kvmsnap-daily_20260101T020000Z
    run_id: 20260101T020000Z-1a2b
    policy: daily
    host: "{{ inventory_hostname }}"

- name: Check after the snapshot that every VM's manifest and disks are in it
  kvmsnap.core.backup_manifest:
    state: verified
    vms: "{{ discover_vms | selectattr('protectable') | list }}"
    snapshot: kvmsnap-daily_20260101T020000Z
    run_id: 20260101T020000Z-1a2b
    host: "{{ inventory_hostname }}"
  register: verified
"""

RETURN = r"""
protected:
  description:
    - O(state=protected) - per snapshot of O(snapshots), the manifests it carries (C(uuid), C(name), and the
      C(snapshot) and C(run_id) the manifest names; a VM is a backup of the snapshot only when they are its own).
  returned: state=protected
  type: dict
  sample: {"kvmsnap-daily_20260101T020000Z": [{"uuid": "0b0e0d3c-54c3-4e3d-8f4b-1f6f1c2d3e4f", "name": "web1",
           "snapshot": "kvmsnap-daily_20260101T020000Z", "run_id": "20260101T020000Z-4f1c"}]}
written:
  description: Files written (or that would be, in check mode).
  returned: state=present
  type: list
  elements: str
  sample: [/mnt/ds1/.kvmsnap/0b0e0d3c-54c3-4e3d-8f4b-1f6f1c2d3e4f/manifest.json]
manifests:
  description:
    - O(state=present) - the manifests written (or that would be, in check mode).
  returned: state=present
  type: list
  elements: dict
  sample: [{"vm": {"name": "web1", "uuid": "0b0e0d3c-54c3-4e3d-8f4b-1f6f1c2d3e4f", "state": "running"},
            "snapshot": "kvmsnap-daily_20260101T020000Z", "disks": [{"target": "vda", "volume": "vol_ds1"}]}]
removed:
  description: O(state=catalog_pruned) - the catalog entries removed (or that would be, in check mode).
  returned: when O(state=catalog_pruned)
  type: list
  elements: dict
  sample: [{"snapshot": "kvmsnap-daily_x", "path": "/var/lib/kvmsnap/catalog/kvmsnap-daily_x",
            "reason": "snapshot kvmsnap-daily_x no longer exists on c1:svm1:vol_ds1"}]
verified:
  description:
    - O(state=verified) - per VM of O(vms), whether its data is in the snapshot; C(missing) lists the paths that
      are not (or not as expected), C(reasons) says why for each.
  returned: state=verified
  type: list
  elements: dict
  sample: [{"name": "web1", "uuid": "0b0e0d3c-54c3-4e3d-8f4b-1f6f1c2d3e4f", "protected": false,
            "missing": ["/mnt/ds1/.snapshot/kvmsnap-daily_20260101T020000Z/web1.img"],
            "reasons": ["disk vda (/mnt/ds1/web1.img): not in the snapshot"]}]
not_protected:
  description: O(state=verified) - one line per VM whose data is not in the snapshot (host, VM, snapshot, paths).
  returned: state=verified
  type: list
  elements: str
  sample: ["kvm1: VM web1 is not in snapshot kvmsnap-daily_20260101T020000Z: /mnt/ds1/.snapshot/... (not in the snapshot)"]
"""

import os
from typing import Any, List, Mapping

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kvmsnap.core.plugins.module_utils import _manifest as mf
from ansible_collections.kvmsnap.core.plugins.module_utils import _manifest_read
from ansible_collections.kvmsnap.core.plugins.module_utils import _verify as vf
from ansible_collections.kvmsnap.core.plugins.module_utils._libvirt import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    LibvirtSession,
    lookup_domain,
)

VIR_DOMAIN_XML_INACTIVE = 2


def _present(module: AnsibleModule) -> dict:
    p = module.params
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    run = {k: p[k] for k in ("run_id", "snapshot", "policy", "host", "consistency", "config_dir", "created")}
    written, manifests = [], []
    with LibvirtSession(p["uri"], readonly=True, retries=p["retries"]) as session:
        for vm in p["vms"]:
            name = vm.get("name")
            uuid = vm.get("uuid")

            def get_xml(conn, ident=uuid):
                return lookup_domain(conn, ident, "uuid").XMLDesc(VIR_DOMAIN_XML_INACTIVE)

            try:
                xml_text = session.call(get_xml)
            except Exception as exc:
                module.fail_json(msg="%s: cannot read the domain XML of VM %s (%s): %s; nothing was snapshotted."
                                 % (p["host"] or "KVM host", name, vm.get("uuid"), exc))
            nvram = None
            if vm.get("nvram"):
                try:
                    with open(vm["nvram"], "rb") as fh:
                        nvram = fh.read()
                except OSError as exc:
                    module.fail_json(msg="%s: cannot read the NVRAM %s of VM %s: %s."
                                     % (p["host"], vm["nvram"], name, exc))
            try:
                manifest = mf.build(vm, xml_text, nvram, run)
            except mf.ManifestError as exc:
                module.fail_json(msg="%s: %s" % (p["host"] or "KVM host", exc))
            roots = [mf.datastore_root(ds) for ds in manifest["datastores"]]
            roots.append(mf.catalog_root(p["state_dir"], p["snapshot"]))
            if module.check_mode:
                written += [r + "/" + manifest["vm"]["uuid"] + "/manifest.json" for r in roots]
            else:
                catalog = roots[-1]
                for root in roots:  # one root at a time, so that the error names the path that failed
                    try:
                        written += mf.write(manifest, xml_text, nvram, [root], key=p["manifest_key"])
                    except OSError as exc:
                        where = ("the local catalog in state_dir %s" % p["state_dir"] if root == catalog
                                 else "datastore path %s" % root)
                        fix = ("check that %s is writable and not full (kvmsnap_state_dir)" % p["state_dir"]
                               if root == catalog else "check that the datastore is mounted read-write and not full")
                        module.fail_json(msg="%s: cannot write the manifest of VM %s to %s (%s: %s): %s; nothing "
                                         "was quiesced or snapshotted." % (
                                             p["host"], name, where, os.path.join(root, manifest["vm"]["uuid"]),
                                             exc.strerror or exc, fix))
            manifests.append(manifest)
    return {"changed": bool(written), "written": written, "manifests": manifests}


def _verified(module: AnsibleModule) -> dict:
    p = module.params
    results: List[Mapping[str, Any]] = [vf.check_vm(vm, p["snapshot"], run_id=p["run_id"], compare_live=p["compare_live"],
                                        lun_files=p["lun_files"]) for vm in p["vms"]]
    not_protected = vf.summary(p["host"] or "KVM host", p["snapshot"], results)
    return {"changed": False, "verified": results, "not_protected": not_protected}


def main() -> None:
    module = AnsibleModule(
        argument_spec=_manifest_read.argument_spec(
            state=dict(type="str", choices=["present", "verified", "protected", "catalog_pruned"], default="present"),
            existing=dict(type="list", elements="str", default=[]),
            listed=dict(type="list", elements="str", default=[]),
            keep_days=dict(type="int", default=0),
            snapshots=dict(type="list", elements="str", default=[]),
            vms=dict(type="list", elements="dict", default=[]),
            run_id=dict(type="str"),
            policy=dict(type="str"),
            consistency=dict(type="str"),
            config_dir=dict(type="path"),
            created=dict(type="str"),
            compare_live=dict(type="bool", default=True),
            lun_files=dict(type="dict"),
        ),
        required_if=[("state", "present", ["snapshot"]), ("state", "verified", ["snapshot"])],
        supports_check_mode=True,
    )
    p = module.params
    try:
        _manifest_read.check_common(p)
        if p["state"] == "protected":
            _manifest_read.check_snapshot_names("snapshots", p["snapshots"])
    except _manifest_read.ManifestReadError as exc:
        module.fail_json(msg=str(exc))
    if p["state"] == "catalog_pruned":
        removed = mf.catalog_prune(p["state_dir"], p["existing"], p["listed"], [p["snapshot"]] if p["snapshot"] else [],
                                   p["keep_days"], check_mode=module.check_mode)
        module.exit_json(changed=bool(removed), removed=removed)
    if p["state"] == "protected":
        module.exit_json(changed=False, protected=mf.protected(p["datastores"], p["datastore_offsets"] or {},
                                                               p["state_dir"], p["snapshots"]))
    if p["state"] == "present":
        module.exit_json(**_present(module))
    module.exit_json(**_verified(module))


if __name__ == "__main__":
    main()
