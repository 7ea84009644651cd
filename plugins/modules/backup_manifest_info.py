#!/usr/bin/python
# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_manifest_info
short_description: Read the backup manifests of a snapshot, or list the volumes of the local catalog
version_added: 1.0.0
description:
  - With O(gather=manifests), reads the manifests of O(snapshot) from C(<datastore>/.snapshot/<snapshot>/.kvmsnap/)
    (NFS) and from the local catalog, and trusts nothing in them - the signature must verify with O(manifest_key) (or
    one of O(manifest_keys_old)) unless O(unsigned_ok) names the VM; hashes, UUID and name in the XML; the manifest's
    disks equal the XML's; every disk inside the datastore it was backed up from, which must be one of
    O(datastores) (the host's own, never the manifest's); the XML passes the allow-list policy with the host's
    emulator and firmware dirs (from libvirt's capabilities at O(uri)); no disk used by another VM of the host.
  - With O(gather=catalog_volumes), lists the volumes (controller, SVM, volume) that the manifests of the local
    catalog name, so that a restore knows where to look for VMs on SAN LUNs, deleted ones too.
  - The manifests are written by M(kvmsnap.core.backup_manifest).
author:
  - kvmsnap.core contributors (@kvmsnap)
extends_documentation_fragment:
  - kvmsnap.core.libvirt
  - kvmsnap.core.attributes
  - kvmsnap.core.attributes.info_module
options:
  gather:
    description:
      - V(manifests) reads the manifests of O(snapshot); V(catalog_volumes) lists the volumes of the local catalog.
    type: str
    choices: [manifests, catalog_volumes]
    default: manifests
  snapshot:
    description:
      - Snapshot name the manifests belong to. Required with O(gather=manifests).
    type: str
  select:
    description:
      - Only these VMs (names or UUIDs); empty means all manifests found.
    type: list
    elements: str
    default: []
  datastores:
    description:
      - Datastore mount points to look in (C(<path>/.snapshot/<snapshot>/.kvmsnap)).
    type: list
    elements: path
    default: []
  datastore_offsets:
    description:
      - Where each of O(datastores) lies inside its volume (datastore path to junction offset, C(/)-prefixed, for
        example C(/images) for C(/srv/vol1/images)); a datastore not named is its volume's root.
      - The snapshot's copy of the manifests is then C(<volume root>/.snapshot/<snapshot>/<offset>/.kvmsnap).
    type: dict
    default: {}
  state_dir:
    description:
      - Directory of the local catalog (C(<state_dir>/catalog/<snapshot>/<uuid>/)).
    type: path
    default: /var/lib/kvmsnap
  host:
    description:
      - KVM host (inventory name), named in the messages.
    type: str
  manifest_key:
    description:
      - Key of the manifest signatures (HMAC-SHA256), at least 16 characters, to verify them with. Keep it on the
        controller (vault, AWX credential); the roles pass C(kvmsnap_manifest_key) or the key file they create.
    type: str
  manifest_keys_old:
    description:
      - Earlier keys, accepted for verification only (key rotation).
    type: list
    elements: str
    default: []
  boot_dirs:
    description:
      - Host directories from which a restored VM may boot a kernel, initrd or dtb (direct kernel boot), besides its
        datastores and the host's firmware dirs.
    type: list
    elements: path
    default: []
  unsigned_ok:
    description:
      - VMs (names or UUIDs) whose manifest is accepted although its signature is missing or does not verify. Every
        other check still applies.
    type: list
    elements: str
    default: []
  controllers:
    description:
      - O(gather=catalog_volumes) - only the catalog entries of these controllers (the inventory's); the state dir is
        shared by every inventory run on the host, and entries of other controllers are ignored (listed in
        RV(ignored)).
    type: list
    elements: str
seealso:
  - module: kvmsnap.core.backup_manifest
"""

EXAMPLES = r"""
- name: Read the manifests of a snapshot
  kvmsnap.core.backup_manifest_info:
    snapshot: kvmsnap-daily_20260101T020000Z
    datastores: [/var/lib/libvirt/images/ds1]   # reads <datastore>/.snapshot/<snapshot>/.kvmsnap/<VM uuid>/
    select: [web1]
    manifest_key: "{{ kvmsnap_manifest_key }}"
  register: manifests

- name: The volumes the local catalog knows (VMs on SAN LUNs, deleted VMs)
  kvmsnap.core.backup_manifest_info:
    gather: catalog_volumes
    controllers: "{{ groups['ontap_controllers'] }}"
  register: catalog
"""

RETURN = r"""
manifests:
  description:
    - O(gather=manifests) - the valid manifests found, each with C(domain_xml_text) (the saved XML), C(nvram_file)
      (path of the saved NVRAM or null) and C(dir).
  returned: always
  type: list
  elements: dict
  sample: [{"vm": {"name": "web1", "uuid": "0b0e0d3c-54c3-4e3d-8f4b-1f6f1c2d3e4f", "state": "running"},
            "snapshot": "kvmsnap-daily_20260101T020000Z", "disks": [{"target": "vda", "volume": "vol_ds1"}]}]
invalid:
  description: O(gather=manifests) - manifests found but refused, with the reason.
  returned: always
  type: list
  elements: dict
  sample: [{"dir": "/mnt/ds1/.snapshot/s/.kvmsnap/0b0e...", "error": "domain.xml does not match the hash"}]
missing:
  description: O(gather=manifests) - entries of O(select) with no manifest in the snapshot.
  returned: always
  type: list
  elements: str
  sample: [db1]
datastore_files:
  description:
    - O(gather=manifests) - per datastore of O(datastores), the files it holds now (paths relative to the datastore,
      C(/)-prefixed; C(.snapshot) and C(.kvmsnap) left out), to tell whether a whole-volume restore would roll
      back anything else.
  returned: always
  type: dict
  sample: {"/mnt/ds1": ["/web1.qcow2", "/notes.txt"]}
volumes:
  description:
    - O(gather=catalog_volumes) - the volumes named by the manifests of the local catalog (of O(controllers) only,
      when given), each with the first catalog C(entry) naming it (C(file), C(snapshot), C(policy), C(controller)).
  returned: always
  type: list
  elements: dict
  sample: [{"controller": "cluster1", "svm": "svm1", "volume": "vol_san", "entry": {"snapshot": "kvmsnap-daily_x"}}]
ignored:
  description: O(gather=catalog_volumes) with O(controllers) - the catalog entries naming another controller (not read).
  returned: always
  type: list
  elements: dict
  sample: [{"file": "/var/lib/kvmsnap/catalog/s/u/manifest.json", "snapshot": "s", "policy": "daily",
            "controller": "cluster2"}]
notes:
  description:
    - O(gather=manifests) - what the policy rewrote (an emulator replaced by the host's, a character device turned
      into a pty) and manifests accepted unsigned through O(unsigned_ok), each naming the VM.
    - O(gather=catalog_volumes) - one line per catalog entry ignored for naming another controller.
  returned: always
  type: list
  elements: str
  sample: ["VM web1: <serial 0>: type='file' path=/var/log/x rewritten to type='pty' (...)"]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kvmsnap.core.plugins.module_utils import _manifest_read
from ansible_collections.kvmsnap.core.plugins.module_utils._libvirt import HAS_LIBVIRT, LIBVIRT_IMPORT_ERROR


def main() -> None:
    module = AnsibleModule(
        argument_spec=_manifest_read.argument_spec(
            gather=dict(type="str", choices=["manifests", "catalog_volumes"], default="manifests"),
            select=dict(type="list", elements="str", default=[]),
            manifest_keys_old=dict(type="list", elements="str", default=[], no_log=True),
            unsigned_ok=dict(type="list", elements="str", default=[]),
            boot_dirs=dict(type="list", elements="path", default=[]),
            controllers=dict(type="list", elements="str"),
        ),
        required_if=[("gather", "manifests", ["snapshot"])],
        supports_check_mode=True,
    )
    result = {"changed": False, "manifests": [], "invalid": [], "missing": [], "datastore_files": {}, "volumes": [],
              "ignored": [], "notes": []}
    try:
        _manifest_read.check_common(module.params)
        if module.params["gather"] == "catalog_volumes":
            result.update(_manifest_read.catalog_volumes(module.params))
        else:
            if not HAS_LIBVIRT:
                module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
            result.update(_manifest_read.read(module.params))
    except _manifest_read.ManifestReadError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
