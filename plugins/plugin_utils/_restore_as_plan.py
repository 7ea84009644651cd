# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller side of a restore as new VMs (``kvmsnap_restore_as``): the plan and the report.

This plugin util is PRIVATE to the collection. It may change without notice.

``as_new_plan(plan, restore_as, start, discovered)`` adds to each VM of a restore plan (_plan.restore_plan) its
``as_new`` (new name, a new UUID, {disk path: new path} on the host, the new NVRAM path) and to each volume its
``restore_paths`` ({path in the volume: new path in the volume}, for ontap_restore) with no file restored in place.
The VM entries keep the backed-up VM's name and UUID (the manifest checks use them); ``guard`` is the plan as the
copies will be (new names, UUIDs and files) for the check against every VM of every host (_restore_guard).
Refused into ``errors``: a bad name or suffix (kvmsnap_restore_as), a new name that a VM of any host has, a LUN
disk (a LUN is restored as a whole, in place), colliding new paths.

``as_new_outcome(plan, per_host, disks)``: report entries per copy (new name, UUID, disk paths, started or not)
and per volume (each file restored to its new path). ``as_new_cleanup(plan, host, disks, start)``: after a
failure, the files this run restored for copies that were not defined.
"""

from __future__ import annotations

import copy
import posixpath
import uuid as _uuid
from typing import Any, Dict, List, Mapping, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils._domain_xml import parse_domain_xml
from ansible_collections.kvmsnap.core.plugins.module_utils._restore_as import (
    RestoreAsError,
    new_names,
    new_path,
    path_map,
)

FIELD = "kvmsnap_restore_as"


def _nvram_of(xml: Any) -> Optional[str]:
    try:
        return parse_domain_xml(xml)["nvram"] if xml else None
    except Exception:
        return None


def as_new_plan(plan: Mapping[str, Any], restore_as: str, start: bool,
                discovered: Optional[Mapping[str, List[Mapping[str, Any]]]] = None) -> Dict[str, Any]:
    out: Dict[str, Any] = copy.deepcopy(dict(plan))
    errors: List[str] = list(out.get("errors") or [])
    entries = [(host, vm) for host in sorted(out.get("hosts") or {}) for vm in out["hosts"][host]]
    try:
        names = new_names(restore_as, [vm["name"] for _h, vm in entries])
    except RestoreAsError as err:
        out["errors"] = errors + [str(err)]
        return out
    taken: Dict[str, str] = {}
    for host in sorted(discovered or {}):
        for other in (discovered or {})[host] or []:
            taken.setdefault(str(other.get("name")), host)
    guard_hosts: Dict[str, List[Dict[str, Any]]] = {h: [] for h in out.get("hosts") or {}}
    by_file: Dict[str, Dict[str, str]] = {}  # volume key -> {path in volume: new path in volume}
    for host, vm in entries:
        new = names[vm["name"]]
        if new in taken:
            errors.append("%s: a VM named %s already exists on %s; choose another name or suffix" % (
                FIELD, new, taken[new]))
            continue
        luns = [d.get("lun") for d in vm.get("disks") or [] if d.get("lun")]
        if luns:
            errors.append("%s: VM %s has disks on LUNs (%s); a restore as a new VM restores file disks only (a LUN "
                          "is restored as a whole, in place)" % (FIELD, vm["name"], ", ".join(luns)))
            continue
        try:
            host_paths = path_map([d["source"] for d in vm.get("disks") or [] if d.get("source")], vm["name"], new)
        except RestoreAsError as err:
            errors.append(str(err))
            continue
        nvram = _nvram_of(vm.get("xml"))
        vm["as_new"] = {"name": new, "uuid": str(_uuid.uuid4()), "disk_paths": host_paths,
                        "nvram_path": new_path(nvram, vm["name"], new) if nvram else None}
        vm["start"] = "always" if start else "never"
        vm["as_new_files"] = []
        guard_disks = []
        for disk in vm.get("disks") or []:
            g = dict(disk)
            g["source"] = host_paths.get(posixpath.normpath(str(disk.get("source"))), disk.get("source"))
            if disk.get("path_in_volume"):
                rel = posixpath.normpath(str(disk["path_in_volume"]))
                g["path_in_volume"] = posixpath.join(posixpath.dirname(rel), posixpath.basename(g["source"]))
                key = "%s:%s:%s" % (disk.get("controller"), disk.get("svm"), disk.get("volume"))
                by_file.setdefault(key, {})[rel] = g["path_in_volume"]
                vm["as_new_files"].append({"volume": key, "path_in_volume": g["path_in_volume"], "path": g["source"]})
            guard_disks.append(g)
        guard_hosts[host].append({"name": new, "uuid": vm["as_new"]["uuid"], "disks": guard_disks, "xml": None})
    for vol in out.get("volumes") or []:
        vol["restore_paths"] = by_file.get(vol["key"], {})
        vol["files"] = []
    out["errors"] = errors
    out["guard"] = {"hosts": guard_hosts}
    out["vms"] = [dict(v, new_name=names.get(v["name"])) for v in out.get("vms") or []]
    out["as_new"] = True
    return out


def as_new_cleanup(plan: Mapping[str, Any], host: str, disks: Optional[Mapping[str, Any]],
                   start: Optional[Mapping[str, Any]]) -> List[str]:
    """After a failure: the host paths of the files this run restored (per the ontap_restore results DISKS) for
    the copies of HOST that vm_restore (results START) did not define. Nothing else: a file that was in the way
    (refused) is never this run's."""
    restored = set()
    for res in (disks or {}).get("results") or []:
        key = (res.get("vol") or {}).get("key")
        for item in res.get("restored") or []:
            if item.get("restore_path"):
                restored.add((key, posixpath.normpath(str(item["restore_path"]))))
    defined = {str((r.get("new") or {}).get("uuid")) for r in (start or {}).get("results") or []
               if "define" in (r.get("actions") or [])}
    out = []
    for vm in (plan.get("hosts") or {}).get(host) or []:
        if str((vm.get("as_new") or {}).get("uuid")) in defined:
            continue
        for f in vm.get("as_new_files") or []:
            if (f.get("volume"), posixpath.normpath(str(f.get("path_in_volume")))) in restored:
                out.append(f["path"])
    return out


def _failed(res: Optional[Mapping[str, Any]]) -> bool:
    return res is not None and bool(res.get("failed"))


def as_new_outcome(plan: Mapping[str, Any], per_host: Mapping[str, Mapping[str, Any]],
                   disks: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """Report entries: {vms, volumes}. per_host[host] = {"start": vm_restore loop result, "error": text}."""
    by_vol = {(r.get("vol") or {}).get("key"): r for r in (disks or {}).get("results") or []}
    volumes = []
    for vol in plan.get("volumes") or []:
        res = by_vol.get(vol["key"]) or {}
        ok = bool(res) and not _failed(res) and not res.get("skipped")
        files = [{"path": r.get("path"), "restore_path": r.get("restore_path"), "type": r.get("type"),
                  "result": "restored", "error": None} for r in res.get("restored") or []]
        files += [{"path": r.get("path"), "restore_path": r.get("restore_path"), "type": r.get("type"),
                   "result": "failed", "error": r.get("error")} for r in res.get("failed_items") or []]
        methods = sorted({str(r.get("method")) for r in res.get("restored") or []})
        volumes.append({"controller": vol["controller"], "svm": vol["svm"], "volume": vol["volume"], "ok": ok,
                        "snapshot": plan.get("snapshot") if ok else None, "method": ",".join(methods) or None,
                        "error": None if ok else (res.get("msg") or "not restored"), "files": files})
    ok_vols = {"%s:%s:%s" % (v["controller"], v["svm"], v["volume"]) for v in volumes if v["ok"]}
    vms = []
    for host, entries in sorted((plan.get("hosts") or {}).items()):
        h = per_host.get(host) or {}
        starts = {(r.get("vm") or {}).get("uuid"): r for r in (h.get("start") or {}).get("results") or []}
        for vm in entries:
            spec = vm.get("as_new") or {}
            res = starts.get(vm["uuid"]) or {}
            keys = sorted({"%s:%s:%s" % (d.get("controller"), d.get("svm"), d.get("volume")) for d in vm["disks"]})
            missing = [k for k in keys if k not in ok_vols]
            new = res.get("new") or {}
            started = bool(new.get("started"))
            ok = bool(res) and not _failed(res) and not missing and (started or vm.get("start") != "always")
            error = None
            if not ok:
                error = res.get("msg") if _failed(res) else h.get("error") or (
                    "disks not restored on %s" % ", ".join(missing) if missing else "not defined")
            vms.append({"host": host, "name": spec.get("name"), "uuid": spec.get("uuid"), "ok": ok, "volumes": keys,
                        "state_before": "absent", "state_after": res.get("state"), "error": error,
                        "details": {"source": {"name": vm["name"], "uuid": vm["uuid"]},
                                    "disks": [d.get("path") for d in new.get("disks") or []]
                                    or sorted((spec.get("disk_paths") or {}).values()),
                                    "nvram": (new.get("nvram") or {}).get("path") or spec.get("nvram_path"),
                                    "macs": new.get("macs") or [], "started": started, "agent": res.get("agent"),
                                    "actions": res.get("actions")}})
    return {"vms": vms, "volumes": volumes}
