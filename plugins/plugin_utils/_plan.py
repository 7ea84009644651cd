# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller side: from every KVM host's discovery to the backup plan (volume sets, fences, controllers).

This plugin util is PRIVATE to the collection. It may change without notice.

`normalize(host, vm_info_result, settings, controllers)` turns a vm_info result into VM records whose disks
carry {controller, svm, volume, datastore, path} (path inside the volume, '/'-prefixed), and the reason a
VM cannot be protected. `backup_plan(per_host, settings)` groups VMs and volumes:

- a *volume set* is a connected group of KVM hosts and volumes (hosts that share a volume are in one set);
- a set with one KVM host is fenced by vm_backup on that host (fence in one process);
- a set with several hosts is fenced by vm_quiesce on each host and one snapshot per controller.
"""

from __future__ import annotations

import posixpath
from typing import Any, Dict, List, Mapping, Optional, Tuple


def _controller_for(address: Optional[str], controllers: Mapping[str, Mapping[str, Any]]) -> Optional[str]:
    """The ontap_controllers inventory host whose name, ontap_hostname or ontap_data_addresses match ADDRESS."""
    if not address:
        return None
    for name, hv in controllers.items():
        addresses = {name, hv.get("ontap_hostname"), hv.get("ansible_host")}
        addresses.update(hv.get("ontap_data_addresses") or [])
        if address in addresses:
            return name
    return None


def _datastore_for(path: Optional[str], datastores: List[Mapping[str, str]]) -> Optional[Mapping[str, str]]:
    if not path:
        return None
    best = None
    norm = posixpath.normpath(path)
    for ds in datastores:
        root = ds["path"]
        if norm == root or norm.startswith(root.rstrip("/") + "/"):
            if best is None or len(root) > len(best["path"]):
                best = ds
    return best


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if mapping.get(key) not in (None, ""):
            return mapping.get(key)
    return None


def normalize(host: str, result: Mapping[str, Any], settings: Mapping[str, Any],
              controllers: Mapping[str, Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """vm_info's result of one KVM host → VM records with mapped disks and protectability."""
    datastores = list(settings.get("datastores") or [])
    wanted = settings.get("vms") or []
    out: List[Dict[str, Any]] = []
    for vm in result.get("vms") or []:
        name = vm.get("name")
        uuid = vm.get("uuid")
        if wanted and name not in wanted and uuid not in wanted:
            continue
        reasons: List[str] = []
        warnings: List[str] = []
        disks: List[Dict[str, Any]] = []
        for disk in vm.get("disks") or []:
            device = disk.get("device") or "disk"
            source = _first(disk, "source", "path", "file")
            target = disk.get("target") or disk.get("dev")
            storage = disk.get("storage") or disk.get("location") or {}
            if device in ("cdrom", "floppy"):
                if source:
                    reasons.append("%s %s has %s attached; detach it (ISO images are not backed up)"
                                   % (device, target, source))
                continue
            entry: Dict[str, Any] = {"target": target, "source": source, "format": disk.get("format"),
                                     "type": disk.get("type"), "controller": None, "svm": None, "volume": None,
                                     "datastore": None, "path": None, "lun": None}
            ds = _datastore_for(source, datastores)
            if ds is not None:
                rel = "/" + posixpath.relpath(posixpath.normpath(source), ds["path"]).lstrip("./")
                entry.update(controller=ds["controller"], svm=ds["svm"], volume=ds["volume"], datastore=ds["path"],
                             path=rel)
            elif storage:
                ctrl = _controller_for(_first(storage, "controller", "server", "address", "cluster"), controllers)
                if ctrl is None and len(controllers) == 1 and storage.get("volume"):
                    ctrl = next(iter(controllers))
                entry.update(controller=ctrl, svm=storage.get("svm"), volume=storage.get("volume"),
                             datastore=_first(storage, "mount", "mountpoint", "datastore"),
                             path=_first(storage, "path_in_volume", "path"), lun=storage.get("lun"))
                kind = storage.get("kind") or storage.get("type")
                if kind == "lvm" or storage.get("lvm"):
                    reasons.append("disk %s is an LVM volume on a SAN LUN; back up the whole LUN per VM instead" % target)
                if entry["controller"] is None and entry["volume"]:
                    reasons.append("disk %s is on %s:%s of a controller that is not in ontap_controllers (add it, or "
                                   "set ontap_data_addresses)" % (target, storage.get("svm"), storage.get("volume")))
            if not entry["volume"]:
                if disk.get("error") or storage.get("error"):
                    reasons.append("disk %s (%s): %s" % (target, source, disk.get("error") or storage.get("error")))
                else:
                    reasons.append("disk %s (%s) is on no mapped ONTAP volume (add its datastore to "
                                   "kvmsnap_datastores)" % (target, source))
            disks.append(entry)
        for reason in vm.get("unprotectable") or vm.get("problems") or []:
            reasons.append(str(reason))
        if not disks and not reasons:
            reasons.append("no disk to back up")
        out.append({
            "host": host, "name": name, "uuid": uuid, "state": vm.get("state"),
            "nvram": vm.get("nvram") if isinstance(vm.get("nvram"), str) else (vm.get("nvram") or {}).get("path"),
            "agent": vm.get("agent"), "disks": disks, "protectable": not reasons, "reasons": reasons,
            "warnings": warnings,
        })
    if wanted:
        found = {v["name"] for v in out} | {v["uuid"] for v in out}
        for item in wanted:
            if item not in found:
                out.append({"host": host, "name": item, "uuid": None, "state": None, "nvram": None, "agent": None,
                            "disks": [], "protectable": False, "warnings": [],
                            "reasons": ["not found on %s (kvmsnap_vms names it)" % host]})
    return out


def vol_key(disk: Mapping[str, Any]) -> str:
    return "%s:%s:%s" % (disk["controller"], disk["svm"], disk["volume"])


def shared_luns(vms: List[Mapping[str, Any]]) -> Dict[str, List[str]]:
    """LUN → VMs when several VMs use one LUN (not supported: one LUN restores as a whole)."""
    users: Dict[str, List[str]] = {}
    for vm in vms:
        for disk in vm.get("disks", []):
            if disk.get("lun"):
                key = "%s:%s" % (vol_key(disk), disk["lun"])
                if vm["name"] not in users.setdefault(key, []):
                    users[key].append(vm["name"])
    return {k: v for k, v in users.items() if len(v) > 1}


def backup_plan(per_host: Mapping[str, List[Mapping[str, Any]]], settings: Mapping[str, Any]) -> Dict[str, Any]:
    """Group the protectable VMs of every host into volume sets; see the module docstring."""
    all_vms = [vm for vms in per_host.values() for vm in vms]
    for lun, names in shared_luns(all_vms).items():
        for vm in all_vms:
            if vm["name"] in names:
                vm["protectable"] = False
                vm["reasons"] = list(vm["reasons"]) + ["LUN %s is shared by VMs %s; one LUN per VM is required"
                                                       % (lun, ", ".join(names))]
    protect = [vm for vm in all_vms if vm["protectable"]]
    volumes: Dict[str, Dict[str, Any]] = {}
    for vm in protect:
        for disk in vm["disks"]:
            key = vol_key(disk)
            vol = volumes.setdefault(key, {"key": key, "controller": disk["controller"], "svm": disk["svm"],
                                           "volume": disk["volume"], "datastore": disk.get("datastore"),
                                           "hosts": [], "vms": []})
            if vm["host"] not in vol["hosts"]:
                vol["hosts"].append(vm["host"])
            if vm["name"] not in vol["vms"]:
                vol["vms"].append(vm["name"])
    # union-find over hosts and volumes
    parent: Dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        parent[find(a)] = find(b)

    for key, vol in volumes.items():
        for host in vol["hosts"]:
            union("h:" + host, "v:" + key)
    sets: Dict[str, Dict[str, Any]] = {}
    for key, vol in volumes.items():
        root = find("v:" + key)
        entry = sets.setdefault(root, {"hosts": [], "volumes": []})
        entry["volumes"].append(key)
        for host in vol["hosts"]:
            if host not in entry["hosts"]:
                entry["hosts"].append(host)
    hosts: Dict[str, Dict[str, Any]] = {}
    for host in per_host:
        hosts[host] = {"mode": "none", "vms": [], "volumes": [], "peers": [], "controllers": []}
    for index, entry in enumerate(sorted(sets.values(), key=lambda e: sorted(e["hosts"])), start=1):
        ctrls = {volumes[k]["controller"] for k in entry["volumes"]}
        # vm_backup fences one host against one controller in one process; anything wider is "shared".
        mode = "single" if len(entry["hosts"]) == 1 and len(ctrls) == 1 else "shared"
        for host in entry["hosts"]:
            h = hosts.setdefault(host, {"mode": "none", "vms": [], "volumes": [], "peers": [], "controllers": []})
            h["mode"] = mode
            h["set"] = index
            h["volumes"] = sorted(entry["volumes"])
            h["controllers"] = sorted(ctrls)
            h["peers"] = sorted(entry["hosts"])
    for vm in protect:
        hosts[vm["host"]]["vms"].append(vm["name"])
    controllers: Dict[str, Dict[str, List[str]]] = {}
    for vol in volumes.values():
        mode = hosts[vol["hosts"][0]]["mode"]
        controllers.setdefault(vol["controller"], {"single": [], "shared": []})[mode].append(
            "%s:%s" % (vol["svm"], vol["volume"]))
    for ctrl in controllers.values():
        ctrl["single"].sort()
        ctrl["shared"].sort()
        ctrl["all"] = sorted(ctrl["single"] + ctrl["shared"])
    return {
        "vms": all_vms,
        "protect": [{"host": v["host"], "name": v["name"], "uuid": v["uuid"]} for v in protect],
        "unprotectable": [{"host": v["host"], "name": v["name"], "reasons": v["reasons"]}
                          for v in all_vms if not v["protectable"]],
        "volumes": sorted(volumes.values(), key=lambda v: v["key"]),
        "hosts": hosts,
        "controllers": controllers,
        "shared_hosts": sorted(h for h, v in hosts.items() if v["mode"] == "shared"),
    }


def host_volumes(plan: Mapping[str, Any], host: str) -> Dict[str, List[str]]:
    """controller → ['svm:volume', …] of the volumes HOST's single-host set needs (the vm_backup input)."""
    out: Dict[str, List[str]] = {}
    for vol in plan.get("volumes", []):
        if host in vol["hosts"]:
            out.setdefault(vol["controller"], []).append("%s:%s" % (vol["svm"], vol["volume"]))
    return out


def table(vms: List[Mapping[str, Any]]) -> List[str]:
    """A readable table of VMs, disks and locations for the play output."""
    rows: List[Tuple[str, ...]] = [("HOST", "VM", "STATE", "DISK", "CONTROLLER:SVM:VOLUME", "PATH/LUN", "PROTECTABLE")]
    for vm in sorted(vms, key=lambda v: (str(v["host"]), str(v["name"]))):
        disks = vm.get("disks") or [{}]
        for i, disk in enumerate(disks):
            loc = vol_key(disk) if disk.get("volume") else "-"
            rows.append((vm["host"] if i == 0 else "", vm["name"] if i == 0 else "", str(vm.get("state") or "")
                         if i == 0 else "", str(disk.get("target") or "-"), loc,
                         str(disk.get("lun") or disk.get("path") or disk.get("source") or "-"),
                         ("yes" if vm["protectable"] else "NO: " + "; ".join(vm["reasons"])) if i == 0 else ""))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    return ["  ".join(r[c].ljust(widths[c]) for c in range(len(widths))) + "  " + r[-1] for r in rows]
