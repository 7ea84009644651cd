# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller side: a restore never touches a file another VM uses, on any inventory host.

This plugin util is PRIVATE to the collection. It may change without notice.

Each KVM host's own check (``_domain_policy.users_in`` in backup_manifest_info and vm_restore) sees only
the domains of that host's libvirt. A VM moved to another host (new or same UUID), a ``<shareable/>`` disk of a
VM on another host, or a shut-off VM elsewhere whose XML lists the disk are invisible to it. Here every target
file of every VM to restore (disk images, NVRAM) and its UUID are checked against every VM that discovery found
on every inventory host (``discover_vms``):

- ``other_users(plan, discovered, identities)``: one refusal per (target, other VM), naming host and VM. Two
  inventory names of one libvirt (same ``identities`` value) see the same domain twice: the VM itself is not a
  user of its own disks there.
- ``volume_vms(plan, discovered, datastores)``: for a whole-volume restore, every VM of any host with a disk on a
  restored volume, by mapped volume or by a path below any datastore path of that volume on any host.
- ``volume_running(...)``: those of them that run and are not being restored (never overridable).
- ``volume_warnings(plan, newer, mode)``: what the report and the pre-flight tell the user in volume mode.
"""

from __future__ import annotations

import posixpath
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils import _ds_paths
from ansible_collections.kvmsnap.core.plugins.module_utils._domain_xml import parse_domain_xml

RUNNING = ("running", "paused", "blocked", "pmsuspended", "in shutdown", "shutdown")


def _norm(path: Optional[str]) -> Optional[str]:
    return posixpath.normpath(str(path)) if path else None


def _vol_key(disk: Mapping[str, Any]) -> Optional[str]:
    if not disk.get("volume"):
        return None
    return "%s:%s:%s" % (disk.get("controller"), disk.get("svm"), disk.get("volume"))


def _targets(vm: Mapping[str, Any]) -> List[Tuple[str, Optional[str], Optional[Tuple[str, Optional[str]]]]]:
    """[(label, absolute path, (volume key, path or LUN in volume))] of the files a restore of VM overwrites."""
    out: List[Tuple[str, Optional[str], Optional[Tuple[str, Optional[str]]]]] = []
    for disk in vm.get("disks") or []:
        where = disk.get("lun") or disk.get("path_in_volume") or disk.get("path")
        key = _vol_key(disk)
        out.append(("disk %s" % (disk.get("source") or where), _norm(disk.get("source")),
                    (key, _norm(where)) if key and where else None))
    try:
        nv = parse_domain_xml(vm.get("xml") or "")["nvram"] if vm.get("xml") else None
    except Exception:
        nv = None
    if nv:
        out.append(("NVRAM %s" % nv, _norm(nv), None))
    return out


def _uses(other: Mapping[str, Any]) -> Tuple[set, set]:
    paths, locs = set(), set()
    for disk in other.get("disks") or []:
        if disk.get("source"):
            paths.add(_norm(disk.get("source")))
        key = _vol_key(disk)
        where = disk.get("lun") or disk.get("path_in_volume") or disk.get("path")
        if key and where:
            locs.add((key, _norm(where)))
    if other.get("nvram"):
        paths.add(_norm(other.get("nvram")))
    return paths, locs


def _same_libvirt(ident: Mapping[str, Any], host: str, other_host: str) -> bool:
    return other_host == host or (ident.get(other_host) is not None and ident.get(other_host) == ident.get(host))


def other_users(plan: Mapping[str, Any], discovered: Mapping[str, List[Mapping[str, Any]]],
                identities: Optional[Mapping[str, Any]] = None) -> List[str]:
    """Why the restore would overwrite a file another VM uses, or run a VM that runs elsewhere (empty: none)."""
    ident = dict(identities or {})
    by_file: Dict[Any, List[Tuple[str, Mapping[str, Any]]]] = {}  # one pass over every discovered VM
    by_uuid: Dict[str, List[Tuple[str, Mapping[str, Any]]]] = {}
    for other_host in sorted(discovered):
        for other in discovered[other_host] or []:
            by_uuid.setdefault(str(other.get("uuid") or "").lower(), []).append((other_host, other))
            paths, locs = _uses(other)
            for key in list(paths) + list(locs):
                by_file.setdefault(key, []).append((other_host, other))
    reasons: List[str] = []
    for host, entries in sorted((plan.get("hosts") or {}).items()):
        for vm in entries:
            uuid = str(vm.get("uuid") or "").lower()
            for other_host, other in by_uuid.get(uuid, []):
                if not _same_libvirt(ident, host, other_host):
                    reasons.append(
                        "VM %s (UUID %s) is also defined on %s (as %s, %s): restoring it on %s would run it "
                        "twice on the same disks; undefine it on one host first" % (
                            vm.get("name"), uuid, other_host, other.get("name"), other.get("state") or "unknown state",
                            host))
            for label, path, loc in _targets(vm):
                seen = set()
                for other_host, other in by_file.get(path, []) + by_file.get(loc, []):
                    o_uuid = str(other.get("uuid") or "").lower()
                    if o_uuid == uuid or (other_host, o_uuid) in seen:
                        continue  # the VM itself (here, or defined elsewhere: refused above)
                    seen.add((other_host, o_uuid))
                    reasons.append(
                        "%s of VM %s (restored on %s) is used by VM %s on %s (%s); a restore would roll back that "
                        "VM's data" % (label, vm.get("name"), host, other.get("name"), other_host,
                                       other.get("state") or "unknown state"))
    return reasons


def _volume_paths(datastores: List[Mapping[str, Any]]) -> Dict[str, List[str]]:
    """volume key → the host directories of its datastores (on any host): the volume root when the host has it
    (a datastore in a subdirectory of the volume), else the datastore directory."""
    out: Dict[str, List[str]] = {}
    for ds in datastores or []:
        key = _vol_key(ds)
        if key and ds.get("path"):
            path = _norm(_ds_paths.volume_root(ds["path"], _ds_paths.offset(ds)) or ds.get("path")) or ""
            if path not in out.setdefault(key, []):
                out[key].append(path)
    return out


def volume_vms(plan: Mapping[str, Any], discovered: Mapping[str, List[Mapping[str, Any]]],
               datastores: List[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Every VM of any host with a disk (or NVRAM) on a volume a whole-volume restore rolls back."""
    roots = _volume_paths(datastores)
    restoring = {str(v.get("uuid")).lower() for v in plan.get("vms") or []}
    out: List[Dict[str, Any]] = []
    for vol in plan.get("volumes") or []:
        dirs = roots.get(vol["key"], [])
        for host in sorted(discovered):
            for vm in discovered[host] or []:
                files = [d.get("source") for d in vm.get("disks") or []
                         if _vol_key(d) == vol["key"] or any(
                             (_norm(d.get("source")) or "").startswith(r.rstrip("/") + "/") for r in dirs)]
                if vm.get("nvram") and any((_norm(vm["nvram"]) or "").startswith(r.rstrip("/") + "/") for r in dirs):
                    files.append(vm["nvram"])
                if files:
                    out.append({"volume": vol["key"], "host": host, "name": vm.get("name"), "uuid": vm.get("uuid"),
                                "state": vm.get("state"), "files": files,
                                "mapped": any(_vol_key(d) == vol["key"] for d in vm.get("disks") or []),
                                "restored": str(vm.get("uuid")).lower() in restoring})
    return out


def volume_running(on_volume: Sequence[Mapping[str, Any]]) -> List[str]:
    """VMs on the volumes that run and are not being restored: a volume restore never rolls them back."""
    return ["%s on %s (%s, volume %s)" % (v["name"], v["host"], v["state"], v["volume"]) for v in on_volume
            if not v["restored"] and (v.get("state") or "") in RUNNING]


def volume_warnings(plan: Mapping[str, Any], newer: Sequence[Mapping[str, Any]],
                    on_volume: Sequence[Mapping[str, Any]]) -> List[str]:
    """What a volume restore destroys, in words for the pre-flight output and the report."""
    vols = ", ".join(v["key"] for v in plan.get("volumes") or [])
    out = ["kvmsnap_restore_mode=volume: no safety copy survives a volume restore - every snapshot newer than the "
           "restored one is deleted, a safety snapshot would be too, so none is taken. To keep the current state "
           "of %s, create a FlexClone of it first (volume clone create) or use kvmsnap_restore_mode=files" % vols]
    names = sorted({str(s.get("name")) for s in newer or []})
    out.append("volume restore deletes %d newer snapshot(s) of %s: %s" % (len(names), vols, ", ".join(names) or
                                                                          "none"))
    others = sorted({"%s on %s" % (v["name"], v["host"]) for v in on_volume if not v["restored"]})
    if others:
        out.append("volume restore rolls back the files of the other VM(s) on %s: %s" % (vols, ", ".join(others)))
    return out
