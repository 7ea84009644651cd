# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Disk → ONTAP volume mapping of vm_backup (domain disks, datastores, vm_mapping).

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils._fence_errors import FenceError


def domain_disks(xml: str) -> List[Dict[str, Any]]:
    """The disks of a domain XML: [{target, type, device, path, readonly}] (path None for network disks)."""
    import xml.etree.ElementTree as ET
    root = ET.fromstring(xml)
    disks = []
    for disk in root.findall("./devices/disk"):
        src = disk.find("source")
        dtype = disk.get("type") or "file"
        path = None
        if src is not None:
            path = src.get("file") if dtype == "file" else src.get("dev") if dtype == "block" else None
        tgt = disk.find("target")
        disks.append({"target": tgt.get("dev") if tgt is not None else None, "type": dtype,
                      "device": disk.get("device") or "disk", "path": path,
                      "readonly": disk.find("readonly") is not None,
                      "protocol": src.get("protocol") if src is not None else None})
    return disks


def parse_datastores(datastores: Any) -> List[Dict[str, str]]:
    """`datastores`: [{path, svm, volume}] — a host directory (the NFS mount of a volume) → that volume."""
    out = []
    for idx, entry in enumerate(datastores or []):
        if not isinstance(entry, dict):
            raise FenceError("datastores[%d]: expected a dict with path, svm and volume." % idx)
        missing = [k for k in ("path", "svm", "volume") if not entry.get(k)]
        if missing:
            raise FenceError("datastores[%d]: missing %s; expected {path: /mnt/ds1, svm: svm1, volume: vol_ds1}."
                             % (idx, ", ".join(missing)))
        path = str(entry["path"])
        if not os.path.isabs(path):
            raise FenceError("datastores[%d].path: %r must be an absolute path (the mount point of the volume)." % (idx, path))
        out.append({"path": os.path.realpath(path), "svm": str(entry["svm"]), "volume": str(entry["volume"])})
    return out


def parse_vm_mapping(vm_mapping: Any, controller: Optional[str] = None) -> List[Dict[str, Any]]:
    """`vm_mapping` (Snap Creator `VM1:ctrl:/vol/vol1/lun1;…` or a structured list) → [{vm, svm, volume, path}].

    One form everywhere, `vm:controller:path` as vm_info and Snap Creator's KVM_VM_MAPPING: parsing and its input
    rules live in _vm_mapping. vm_backup talks to one controller (CONTROLLER, its `hostname`): every entry must name
    it. ``svm`` is the structured form's explicit SVM, or None: then the SVM is the one that holds the volume on the
    controller (resolve_mapping_svms, once connected)."""
    from ansible_collections.kvmsnap.core.plugins.module_utils import _vm_mapping
    if vm_mapping is None or vm_mapping == "" or vm_mapping == []:
        return []
    try:
        entries = _vm_mapping.parse_vm_mapping(vm_mapping)
    except _vm_mapping.VmMappingError as err:
        raise FenceError(str(err)) from None
    out = []
    for entry in entries:
        if not entry.get("volume"):
            raise FenceError("vm_mapping entry %d (%s): path %r is not of the form /vol/<volume>/…; give volume "
                             "explicitly in the structured form." % (entry["index"], entry["vm"], entry["path"]))
        if controller is not None and entry["controller"].lower() != str(controller).lower():
            raise FenceError(
                "vm_mapping entry %d (%s): the controller field is %r, but this task's controller is %s (option "
                "hostname). vm_mapping takes %s, as vm_info and Snap Creator's KVM_VM_MAPPING do; the form "
                "vm:svm:/vol/<volume>/... of earlier releases is no longer accepted. Write %s:%s:%s (the SVM is the one "
                "holding volume %s), or the structured form {vm, controller, path, svm}. Nothing was quiesced."
                % (entry["index"], entry["vm"], entry["controller"], controller, _vm_mapping.FORM, entry["vm"],
                   _vm_mapping.format_controller(str(controller)), entry["path"], entry["volume"]))
        out.append({"vm": entry["vm"], "svm": entry.get("svm"), "volume": entry["volume"], "path": entry["path"]})
    return out


def resolve_mapping_svms(ontap: Any, volumes: List[tuple]) -> List[tuple]:
    """Fill the SVM of (None, volume) pairs (vm_mapping entries without svm) from the controller's volumes."""
    out: List[tuple] = []
    for svm, vol in volumes:
        if svm is None:
            svms = sorted({v.get("svm") for v in ontap.list_volumes(name=vol) if v.get("svm")})
            if len(svms) != 1:
                raise FenceError(
                    "vm_mapping: volume %s %s on ONTAP %s; give the SVM with the structured form {vm, controller, path, "
                    "svm}. Nothing was quiesced." % (vol, "exists in the SVMs %s" % ", ".join(svms) if svms
                                                     else "does not exist", ontap.hostname))
            svm = svms[0]
        if (svm, vol) not in out:
            out.append((svm, vol))
    return out


def map_vm_volumes(vms: List[Dict[str, Any]], xmls: Dict[str, str], datastores: List[Dict[str, str]],
                   mapping: List[Dict[str, str]]) -> Dict[str, Any]:
    """VM → volumes. Every disk must map (else one error listing every unmapped disk); read-only cdroms skipped."""
    per_vm: Dict[str, List[Dict[str, str]]] = {}
    unmapped: List[str] = []
    skipped: List[str] = []
    by_vm_map: Dict[str, List[Dict[str, str]]] = {}
    for entry in mapping:
        by_vm_map.setdefault(entry["vm"], []).append(entry)
    for vm in vms:
        vols: List[Dict[str, str]] = []
        explicit = by_vm_map.get(vm["name"], []) + by_vm_map.get(vm["uuid"], [])
        for entry in explicit:
            ref = {"svm": entry["svm"], "volume": entry["volume"]}
            if ref not in vols:
                vols.append(ref)
        for disk in domain_disks(xmls[vm["uuid"]]):
            if disk["device"] in ("cdrom", "floppy") and (disk["readonly"] or disk["device"] == "cdrom"):
                if disk["path"]:
                    skipped.append("%s: %s %s (%s) is not backed up"
                                   % (vm["name"], disk["device"], disk["target"], disk["path"]))
                continue
            if explicit:
                continue  # the explicit mapping names this VM's volumes
            path = disk["path"]
            if path is None:
                unmapped.append("%s: disk %s (%s %s) is not a file on a mapped datastore" % (
                    vm["name"], disk["target"], disk["type"], disk.get("protocol") or ""))
                continue
            real = os.path.realpath(path)
            best = None
            for ds in datastores:
                if real == ds["path"] or real.startswith(ds["path"].rstrip("/") + "/"):
                    if best is None or len(ds["path"]) > len(best["path"]):
                        best = ds
            if best is None:
                unmapped.append("%s: disk %s (%s) is on no datastore in datastores/vm_mapping" % (
                    vm["name"], disk["target"], path))
                continue
            ref = {"svm": best["svm"], "volume": best["volume"]}
            if ref not in vols:
                vols.append(ref)
        per_vm[vm["uuid"]] = vols
    return {"per_vm": per_vm, "unmapped": unmapped, "skipped": skipped}
