# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller side: from every KVM host's discovery to the backup plan (volume sets, fences, controllers).

This plugin util is PRIVATE to the collection. It may change without notice.

`normalize(host, vm_info_result, settings, controllers)` turns a vm_info result into VM records whose disks
carry {controller, svm, volume, datastore, path, path_in_volume} (path: inside the datastore; path_in_volume:
inside the volume, through _ds_paths; both '/'-prefixed), and the reason a
VM cannot be protected. `backup_plan(per_host, settings)` groups VMs and volumes:

- a *volume set* is a connected group of KVM hosts and volumes (hosts that share a volume are in one set);
- a set with one KVM host is fenced by vm_backup on that host (fence in one process);
- a set with several hosts is fenced by vm_quiesce on each host and one snapshot per controller.
"""

from __future__ import annotations

import posixpath
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils import _ds_paths
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_window import window_faults
from ansible_collections.kvmsnap.core.plugins.plugin_utils._catalog import stale_reason


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
                                     "datastore": None, "path": None, "path_in_volume": None, "lun": None}
            ds = _datastore_for(source, datastores)
            if disk.get("volume"):
                storage = disk  # vm_info reports the location on the disk itself
            lun = storage.get("lun")
            if isinstance(lun, Mapping):
                lun = lun.get("path")
            # the string-prefix fallback only where vm_info had no say: a disk it refused (symlink leaving the
            # volume, nested mount) must not be attributed to the datastore it merely seems to lie in
            if ds is not None and not storage.get("volume") and not (disk.get("reason") or disk.get("error")):
                in_ds = _ds_paths.rel_to(ds["path"], source) or "/"
                entry.update(controller=ds["controller"], svm=ds["svm"], volume=ds["volume"], datastore=ds["path"],
                             path=in_ds, path_in_volume=_ds_paths.in_volume(_ds_paths.offset(ds), in_ds))
            elif storage:
                ctrl = storage.get("controller")
                if ctrl not in controllers:
                    ctrl = _controller_for(_first(storage, "controller", "server", "address", "cluster"), controllers)
                if ctrl is None and len(controllers) == 1 and storage.get("volume"):
                    ctrl = next(iter(controllers))
                datastore = _first(storage, "datastore", "mount", "mountpoint")
                # path: relative to the datastore (what the manifest keeps); path_in_volume: what ONTAP needs
                piv = storage.get("path_in_volume") if lun is None else None
                rel = _ds_paths.rel_to(datastore, source) if datastore and source and lun is None else None
                entry.update(controller=ctrl, svm=storage.get("svm"), volume=storage.get("volume"),
                             datastore=datastore, path=rel or piv, path_in_volume=piv, lun=lun)
                for note in storage.get("notes") or []:
                    if "lvm" in str(note).lower() and lun:
                        reasons.append("disk %s: %s" % (target, note))
                    else:
                        warnings.append("disk %s: %s" % (target, note))
                if entry["controller"] is None and entry["volume"]:
                    reasons.append("disk %s is on %s:%s of a controller that is not in ontap_controllers (add it, or "
                                   "set ontap_data_addresses)" % (target, storage.get("svm"), storage.get("volume")))
            if not entry["volume"]:
                if disk.get("error") or disk.get("reason"):
                    reasons.append("disk %s (%s): %s" % (target, source, disk.get("error") or disk.get("reason")))
                else:
                    reasons.append("disk %s (%s) is on no mapped ONTAP volume (add its datastore to "
                                   "kvmsnap_datastores)" % (target, source))
            disks.append(entry)
        for item in result.get("unprotectable") or []:
            if item.get("uuid") == uuid or (item.get("uuid") is None and item.get("vm") == name):
                text = str(item.get("reason"))
                if item.get("severity") == "note":
                    warnings.append(text)
                elif not any(text in r or r in text for r in reasons) and not any(
                        (item.get("disk") or "\0") in r and "no mapped" in r for r in reasons):
                    reasons.append(text)
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


def shared_luns(vms: Sequence[Mapping[str, Any]]) -> Dict[str, List[str]]:
    """LUN → VMs when several VMs use one LUN (not supported: one LUN restores as a whole)."""
    users: Dict[str, List[str]] = {}
    for vm in vms:
        for disk in vm.get("disks", []):
            if disk.get("lun"):
                key = "%s:%s" % (vol_key(disk), disk["lun"])
                if vm["name"] not in users.setdefault(key, []):
                    users[key].append(vm["name"])
    return {k: v for k, v in users.items() if len(v) > 1}


def backup_plan(per_host: Mapping[str, List[Dict[str, Any]]], settings: Mapping[str, Any]) -> Dict[str, Any]:
    """Group the protectable VMs of every host into volume sets (VMs that cannot be protected are marked so in
    place); see the module docstring."""
    all_vms = [vm for vms in per_host.values() for vm in vms]
    hosts_of: Dict[str, List[str]] = {}
    for vm in all_vms:
        if vm.get("uuid"):
            hosts_of.setdefault(vm["uuid"], []).append(vm["host"])
    for vm in all_vms:
        seen_on = hosts_of.get(vm.get("uuid") or "", [])
        if len(seen_on) > 1:
            vm["protectable"] = False
            vm["reasons"] = list(vm["reasons"]) + [
                "the same VM (UUID %s) is seen on KVM hosts %s; the same libvirt twice in the inventory? Limit "
                "kvmsnap_vms per host" % (vm["uuid"], ", ".join(sorted(seen_on)))]
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


def table(vms: List[Mapping[str, Any]]) -> List[str]:
    """A readable table of VMs, disks and locations for the play output."""
    rows: List[Tuple[str, ...]] = [("HOST", "VM", "STATE", "DISK", "CONTROLLER:SVM:VOLUME", "PATH/LUN", "PROTECTABLE")]
    for vm in sorted(vms, key=lambda v: (str(v["host"]), str(v["name"]))):
        disks = vm.get("disks") or [{}]
        for i, disk in enumerate(disks):
            loc = vol_key(disk) if disk.get("volume") else "-"
            rows.append((vm["host"] if i == 0 else "", vm["name"] if i == 0 else "", str(vm.get("state") or "")
                         if i == 0 else "", str(disk.get("target") or "-"), loc,
                         str(disk.get("lun") or disk.get("path_in_volume") or disk.get("path") or disk.get("source") or "-"),
                         ("yes" if vm["protectable"] else "NO: " + "; ".join(vm["reasons"])) if i == 0 else ""))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    return ["  ".join(r[c].ljust(widths[c]) for c in range(len(widths))) + "  " + r[-1] for r in rows]


OK_RELEASE_WORDS = ("fail", "error", "still", "not released", "unknown")


def _released(result: Optional[str]) -> Optional[bool]:
    if result is None:
        return None
    text = str(result).lower()
    return not any(word in text for word in OK_RELEASE_WORDS)


def _failed(res: Optional[Mapping[str, Any]]) -> bool:
    return not res or bool(res.get("failed")) or bool(res.get("skipped"))


CONSISTENCY_ORDER = ("offline", "application", "filesystem", "suspended", "crash")


def _weakest(levels: List[Optional[str]]) -> Optional[str]:
    known = [lvl for lvl in levels if lvl in CONSISTENCY_ORDER]
    return max(known, key=CONSISTENCY_ORDER.index) if known else None


def achieved_consistency(quiesced: Mapping[str, Any], released: Optional[Mapping[str, Any]],
                         t_snapshot: Optional[float]) -> Tuple[Optional[str], Optional[str]]:
    """The consistency a VM of a shared fence really has in the snapshot, and why it is less than asked.

    Only this run's release task may end the quiesce: that task runs after the snapshot task returned, so
    the VM was held across the snapshot. Released by the watchdog, by another run's recovery, found already
    running by the release (someone else resumed it), or released (by its own clock) before the snapshot
    task completed (T_SNAPSHOT, epoch s): the VM may have run again before the point in time → crash.
    """
    level = quiesced.get("consistency")
    if quiesced.get("action") in (None, "none"):
        return level, None  # not quiesced (shut off: offline; mode none / user-paused: as recorded)
    if released is None:
        return "crash", "no release record of this run"
    if released.get("release_error") or released.get("released") is False:
        return level, None  # still held after the snapshot (and reported NOT RELEASED): nothing ran meanwhile
    who = released.get("released_by")
    at = released.get("released_at")
    when = " at %s" % _utc(at) if at else ""
    if who != "release":
        what = {"watchdog": "the watchdog (deadline passed)", "recovery": "another run's recovery",
                "none": "nobody: this run's journal does not hold it"}.get(str(who), str(who))
        return "crash", "released by %s%s, not by this run's release after the snapshot" % (what, when)
    if str(released.get("release_result") or "") not in ("resumed", "thawed"):
        return "crash", "found %s by this run's release: resumed by someone else meanwhile" % (
            released.get("release_result") or "not paused")
    if at is not None and t_snapshot is not None and float(at) < float(t_snapshot):
        return "crash", "released%s, before the snapshot completed at %s" % (when, _utc(t_snapshot))
    return level, None


def overlay_consistency(quiesced: Mapping[str, Any], released: Optional[Mapping[str, Any]],
                        t_snapshot: Optional[float], create_times: List[Optional[int]]) -> Tuple[Optional[str], Optional[str]]:
    """The consistency an overlay-fenced VM of a shared fence has in the snapshot, and why it is less than asked.

    Its images were frozen by its overlays from ``overlay_at`` until the commit of the overlays began
    (``commit_started_at``, reported by the release that committed them; null: not committed, the images are still
    frozen). The snapshot holds that instant only if its create time lies in between and the snapshot task
    (T_SNAPSHOT) ended before the commit began (the overlay window rule); otherwise crash.
    """
    level = quiesced.get("consistency")
    if released is None:
        return "crash", "no record of this run's release, which commits the overlays"
    window = {"name": quiesced.get("name"), "overlay_at": quiesced.get("overlay_at"),
              "commit_started_at": released.get("commit_started_at")}
    faults = window_faults(create_times, [window], None if t_snapshot is None else float(t_snapshot))
    if faults:
        return "crash", "outside its overlay window: %s" % "; ".join(faults)
    return level, None


def _create_times(snap_res: Mapping[str, Any], vol_keys: List[str]) -> List[Optional[int]]:
    """The create times of the shared snapshots on the volumes VOL_KEYS (controller:svm:volume)."""
    out: List[Optional[int]] = []
    for item in snap_res.get("results") or []:
        for snap in item.get("snapshots") or []:
            if "%s:%s:%s" % (item.get("item"), snap.get("svm"), snap.get("volume")) in vol_keys:
                out.append(snap.get("create_time"))
    return out


def _utc(epoch: Any) -> str:
    import time
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(epoch)))
    except (TypeError, ValueError):
        return str(epoch)


def fence_outcome(plan: Mapping[str, Any], per_host: Mapping[str, Mapping[str, Any]],
                  allow_crash: bool = False) -> Dict[str, Any]:
    """Per-host fence results → report entries {vms, volumes}, the volumes that got the snapshot, and what to
    confirm in the snapshot comments.

    per_host[host] = {"fence": vm_backup result (single mode), "quiesce": vm_quiesce quiesced result,
    "release": vm_quiesce released result, "snap": ontap_snapshot loop result (shared mode, same on all hosts),
    "error": text, "t_quiesce": epoch s before quiesce, "t_snapshot": epoch s after the snapshot task,
    "t_released": epoch s after release}.

    A VM of a shared fence gets the consistency it achieved (achieved_consistency); a crash-consistent VM
    whose quiesce had promised more fails the run unless ALLOW_CRASH. ``confirm`` lists per controller the
    volumes whose pending snapshot the role confirms: state good with the weakest consistency of their VMs,
    or late (consistency crash) when a VM on them failed that way; late volumes are not "done".
    """
    done: Dict[Optional[str], List[str]] = {}  # controller → ["svm:volume"]
    errors_by_vol: Dict[str, str] = {}
    methods: Dict[str, Optional[str]] = {}
    host_ok: Dict[str, bool] = {}
    for host, hp in plan["hosts"].items():
        h = per_host.get(host) or {}
        if hp["mode"] == "single":
            fence = h.get("fence") or {}
            ok = not _failed(fence) and bool(fence.get("snapshots"))
            host_ok[host] = ok
            ctrl = hp["controllers"][0] if hp.get("controllers") else None
            for snap in fence.get("snapshots") or [] if ok else []:
                key = "%s:%s" % (snap.get("svm"), snap.get("volume"))
                done.setdefault(ctrl, []).append(key)
                methods["%s:%s" % (ctrl, key)] = fence.get("method")
            if not ok:
                for key in hp["volumes"]:
                    errors_by_vol[key] = h.get("error") or fence.get("msg") or "fence did not run on %s" % host
        elif hp["mode"] == "shared":
            snap_res = h.get("snap") or {}
            quiesce = h.get("quiesce") or {}
            # a failed snapshot on one controller does not undo the others: judged per volume below
            host_ok[host] = not _failed(quiesce)
            for item in snap_res.get("results") or []:
                ctrl = item.get("item")
                if _failed(item):
                    for key in hp["volumes"]:
                        if key.split(":", 1)[0] == ctrl and item.get("msg"):
                            errors_by_vol[key] = str(item.get("msg"))
                    continue
                for snap in item.get("snapshots") or []:
                    key = "%s:%s" % (snap.get("svm"), snap.get("volume"))
                    if key not in done.get(ctrl, []):
                        done.setdefault(ctrl, []).append(key)
                    methods["%s:%s" % (ctrl, key)] = item.get("method")
            for key in hp["volumes"]:
                ctrl, rest = key.split(":", 1)
                if rest not in done.get(ctrl, []):
                    errors_by_vol.setdefault(key, h.get("error") or "no snapshot (shared fence of %s)"
                                             % ", ".join(hp["peers"]))
    vols = []
    for vol in plan["volumes"]:
        key = vol["key"]
        ok = "%s:%s" % (vol["svm"], vol["volume"]) in done.get(vol["controller"], [])
        vols.append({"controller": vol["controller"], "svm": vol["svm"], "volume": vol["volume"], "ok": ok,
                     "method": methods.get(key), "error": None if ok else errors_by_vol.get(key, "no snapshot"),
                     "vms": vol["vms"], "hosts": vol["hosts"]})
    ok_vols = {v["controller"] + ":" + v["svm"] + ":" + v["volume"] for v in vols if v["ok"]}
    vms = []
    for vm in plan["vms"]:
        h = per_host.get(vm["host"]) or {}
        mode = plan["hosts"].get(vm["host"], {}).get("mode")
        entry: Dict[str, Any] = {"host": vm["host"], "name": vm["name"], "uuid": vm["uuid"], "ok": False,
                                 "volumes": sorted({vol_key(d) for d in vm["disks"] if d.get("volume")}),
                                 "state_before": vm.get("state")}
        if not vm["protectable"]:
            entry["error"] = "not protectable: " + "; ".join(vm["reasons"])
            vms.append(entry)
            continue
        if mode == "single":
            rvms = (h.get("fence") or {}).get("vms") or []
            rel_source = rvms
        else:
            rvms = (h.get("quiesce") or {}).get("vms") or []
            rel_source = (h.get("release") or {}).get("vms") or []
        match = next((r for r in rvms if r.get("uuid") == vm["uuid"] or r.get("name") == vm["name"]), None)
        rel = next((r for r in rel_source if r.get("uuid") == vm["uuid"] or r.get("name") == vm["name"]), None)
        if match:
            entry["consistency"] = match.get("consistency")
            overlaid = match.get("fence") == "overlay"
            if match.get("fence"):
                entry["fence"] = match["fence"]
                entry["fence_reason"] = match.get("fence_reason")
            if mode == "shared":
                if overlaid:
                    level, why = overlay_consistency(match, rel, h.get("t_snapshot"),
                                                     _create_times(h.get("snap") or {}, entry["volumes"]))
                else:
                    level, why = achieved_consistency(match, rel, h.get("t_snapshot"))
                entry["consistency"] = level
                if why:
                    entry["details"] = dict(entry.get("details") or {}, crash_reason=why,
                                            released_by=(rel or {}).get("released_by"),
                                            released_at=(rel or {}).get("released_at"))
                    if not allow_crash and match.get("consistency") != "crash":
                        entry["error"] = ("crash-consistent only: %s. Not protected; set "
                                          "kvmsnap_allow_crash_consistent=true to accept crash-consistent backups, "
                                          "or raise kvmsnap_quiesce_deadline above the snapshot time" % why)
            if mode == "single" or overlaid:  # an overlay VM's pause ended with its quiesce task
                entry["pause_ms"] = match.get("pause_ms")
            elif rel is not None and rel.get("pause_ms") is not None:
                # measured on the KVM host: from this VM's quiesce to its release (vm_quiesce journal)
                entry["pause_ms"] = rel["pause_ms"]
            elif h.get("t_quiesce") and h.get("t_released"):
                # measured on the Ansible side: from the quiesce task's return to the release task's return
                window = (float(h["t_released"]) - float(h["t_quiesce"])) * 1000.0
                entry["pause_ms"] = round(max(window, 0.0), 1) if match.get("action") not in (None, "none") else 0
                entry["details"] = dict(entry.get("details") or {},
                                        pause_measured="between the quiesce and release tasks (approximate)")
            if match.get("error"):
                entry["error"] = match["error"]
        if rel is not None:
            entry["released"] = _released(rel.get("release_result"))
        missing = [k for k in entry["volumes"] if k not in ok_vols]
        entry["ok"] = bool(host_ok.get(vm["host"])) and not missing and not entry.get("error")
        if not entry["ok"] and not entry.get("error"):
            if missing:
                entry["error"] = "no snapshot of %s (%s)" % (", ".join(missing), "; ".join(
                    sorted({errors_by_vol.get(k) or h.get("error") or "no snapshot" for k in missing})))
            else:
                entry["error"] = h.get("error") or "fence failed"
        vms.append(entry)
    confirm = _confirm_plan(plan, per_host, vols, vms)
    late = {(c["controller"], v) for c in confirm if c["state"] == "late" for v in c["volumes"]}
    for vol in vols:
        if (vol["controller"], "%s:%s" % (vol["svm"], vol["volume"])) in late:
            vol["ok"] = False
            vol["error"] = ("snapshot taken, but a VM on it was released before it completed (crash-consistent): "
                            "marked late, not a backup")
    late_keys = {"%s:%s" % (c, k) for c, k in late}
    for vm in vms:
        hit = [k for k in vm.get("volumes", []) if k in late_keys]
        if hit and vm["ok"]:  # a sound VM on a volume whose snapshot another VM made crash-consistent
            vm["ok"] = False
            vm["error"] = "the snapshot of %s is marked late (another VM on it was released before it completed)" \
                % ", ".join(hit)
    done_out = {c: sorted(k for k in v if (c, k) not in late) for c, v in done.items()}
    return {"vms": vms, "volumes": vols, "done": {c: v for c, v in done_out.items() if v}, "confirm": confirm}


def _confirm_plan(plan: Mapping[str, Any], per_host: Mapping[str, Mapping[str, Any]],
                  vols: List[Dict[str, Any]], vms: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """[{controller, volumes, state, consistency}] for every pending snapshot set the fences produced.

    Single-host fences: vm_backup left its snapshot pending (confirm: false) only when it was taken in the
    window; its own consistency is confirmed. Shared fences: per controller, the weakest consistency of the
    VMs on those volumes; late when one of them is crash-consistent against what its quiesce promised and
    is not ok (allow_crash not set).
    """
    out: List[Dict[str, Any]] = []
    for host, hp in plan["hosts"].items():
        if hp["mode"] != "single":
            continue
        fence = (per_host.get(host) or {}).get("fence") or {}
        if _failed(fence) or fence.get("trust") != "pending" or not fence.get("snapshots"):
            continue
        ctrl = hp["controllers"][0] if hp.get("controllers") else None
        out.append({"controller": ctrl, "host": host, "state": "good", "consistency": fence.get("consistency"),
                    "volumes": sorted("%s:%s" % (x.get("svm"), x.get("volume")) for x in fence["snapshots"])})
    shared: Dict[str, Dict[str, Any]] = {}
    for vol in vols:
        hp = plan["hosts"].get(vol["hosts"][0] if vol.get("hosts") else "", {})
        if hp.get("mode") != "shared" or not vol["ok"]:
            continue
        key = "%s:%s" % (vol["svm"], vol["volume"])
        entry = shared.setdefault(vol["controller"], {"controller": vol["controller"], "host": None, "state": "good",
                                                      "consistency": None, "volumes": [], "levels": []})
        entry["volumes"].append(key)
        on_vol = [vm for vm in vms if vm["name"] in vol.get("vms", []) and
                  "%s:%s:%s" % (vol["controller"], vol["svm"], vol["volume"]) in vm.get("volumes", [])]
        for vm in on_vol:
            entry["levels"].append(vm.get("consistency") or "crash")
            if (vm.get("details") or {}).get("crash_reason") and not vm["ok"]:
                entry["state"] = "late"
    for entry in shared.values():
        levels = entry.pop("levels")
        entry["consistency"] = "crash" if entry["state"] == "late" else (_weakest(levels) or "crash")
        entry["volumes"].sort()
        out.append(entry)
    return out


def apply_verification(vms: List[Mapping[str, Any]], per_host: Mapping[str, Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Report entries of a backup after the check in the snapshot (roles/backup/tasks/verify.yml).

    per_host[host] = backup_verify {vms: [{name, uuid, protected, missing, reasons}]}. A VM the fence did protect
    but whose manifest or disks are not in the snapshot is NOT protected: the run must not say OK for it.
    """
    out = []
    for vm in vms:
        entry = dict(vm)
        checks = (per_host.get(str(vm.get("host"))) or {}).get("vms") or []
        check = next((c for c in checks if (c.get("uuid") and c.get("uuid") == vm.get("uuid"))
                      or c.get("name") == vm.get("name")), None)
        details = dict(entry.get("details") or {})
        if check is not None:
            details["verified"] = bool(check.get("protected"))
            if not check.get("protected"):
                details["missing"] = list(check.get("missing") or [])
                if entry.get("ok"):
                    entry["ok"] = False
                    entry["error"] = "not in the snapshot (verified after it): %s" % "; ".join(
                        "%s (%s)" % (p, why) for p, why in zip(check.get("missing") or [], check.get("reasons") or []))
        elif entry.get("ok"):
            # a protected VM that was not checked is not called good either
            details["verified"] = False
            entry["ok"] = False
            entry["error"] = "not verified in the snapshot (the check did not run on %s)" % vm.get("host")
        entry["details"] = details
        out.append(entry)
    return out


def merge_post(volumes: List[Mapping[str, Any]], mirrors: List[Mapping[str, Any]], prunes: List[Mapping[str, Any]],
               snapshot: Optional[str]) -> List[Dict[str, Any]]:
    """Add the snapshot name, SnapMirror/SnapVault results and prune results (loop results per controller)."""
    out = []
    for vol in volumes:
        entry = dict(vol)
        entry["snapshot"] = snapshot if vol.get("ok") else None
        path = "%s:%s" % (vol["svm"], vol["volume"])
        entry["snapmirror"] = []
        for res in mirrors or []:
            if res.get("item") != vol["controller"] or res.get("skipped"):
                continue
            if _failed(res):
                entry["snapmirror"].append({"type": "snapmirror/snapvault", "destination": "?", "result": "failed",
                                            "error": res.get("msg")})
                continue
            updated = {(r.get("source"), r.get("destination")) for r in res.get("updated") or []}
            for rel in res.get("relationships") or []:
                if rel.get("source") != path:
                    continue
                result = "ok" if (rel.get("source"), rel.get("destination")) in updated else "skipped"
                if result == "ok" and rel.get("healthy") is False:
                    result = "unhealthy"
                # a later result for the same relationship (its holder on another cluster) says what happened
                entry["snapmirror"] = [m for m in entry["snapmirror"] if m["destination"] != rel.get("destination")]
                entry["snapmirror"].append({"type": rel.get("type"), "destination": rel.get("destination"),
                                            "result": result, "state": rel.get("state"),
                                            "error": rel.get("unhealthy_reason")})
            for sk in res.get("not_updated") or []:
                if sk.get("source") == path:
                    entry["snapmirror"] = [m for m in entry["snapmirror"] if m["destination"] != sk.get("destination")]
                    entry["snapmirror"].append({"type": sk.get("type"), "destination": sk.get("destination"),
                                                "result": "skipped", "error": sk.get("reason")})
        entry["pruned"] = []
        entry["prune_skipped"] = []
        for res in prunes or []:
            if res.get("item") != vol["controller"] or res.get("skipped"):
                continue
            if _failed(res):
                entry["prune_skipped"].append({"name": "*", "reason": res.get("msg")})
                continue
            for p in res.get("pruned") or []:
                if p.get("svm") == vol["svm"] and p.get("volume") == vol["volume"]:
                    entry["pruned"].append(p.get("name"))
            for p in res.get("not_pruned") or []:
                if p.get("svm") == vol["svm"] and p.get("volume") == vol["volume"]:
                    entry["prune_skipped"].append({"name": p.get("name"), "reason": p.get("reason")})
        out.append(entry)
    return out


def restore_plan(per_host: Mapping[str, Mapping[str, Any]], requested: Any, snapshot: Mapping[str, Any]) -> Dict[str, Any]:
    """Which host restores which VM from which manifest, and which files/LUNs of which volume.

    per_host[host] = {"manifests": [...] (backup_manifest_info), "invalid": [...], "current": {uuid: state},
    "datastores": [the host's datastore records], "notes": [...]}.
    requested: 'all' or a list of names/UUIDs. A VM is restored by the host its manifest names; a requested VM
    whose manifest names a host outside the play is claimed by the first host that sees its manifest.
    Nothing the manifest says widens what may be touched: allowed paths are the host's datastores the VM's disks
    lie in (backup_manifest_info vetted them), and each disk's volume must be the one the host maps that datastore to.
    """
    claimed: Dict[str, Dict[str, Any]] = {}
    errors: List[str] = []
    seen: Dict[str, List[str]] = {}
    for host in sorted(per_host):
        for man in per_host[host].get("manifests") or []:
            uuid = man["vm"]["uuid"]
            seen.setdefault(uuid, []).append(host)
    stale: Dict[str, str] = {}
    for host in sorted(per_host):
        for man in per_host[host].get("manifests") or []:
            vm = man["vm"]
            if requested != "all" and vm["name"] not in requested and vm["uuid"] not in requested:
                continue
            why = stale_reason(man, snapshot)
            if why is not None:  # docs/dev/faults.md#stale-manifest: an earlier run's manifest is no backup of this one
                stale[vm["uuid"]] = "VM %s was not protected by snapshot %s: %s; restore it from a snapshot that " \
                    "protected it (kvmsnap_restore_snapshot=latest picks the newest)" % (vm["name"], snapshot.get("name"), why)
                continue
            owner = man.get("host") if man.get("host") in per_host else seen[vm["uuid"]][0]
            if owner != host or vm["uuid"] in claimed:
                continue
            claimed[vm["uuid"]] = {"host": host, "manifest": man}
    refused = [str(bad.get("error")) + " " + str(bad.get("uuid")) for h in per_host
               for bad in per_host[h].get("invalid") or []]
    notes_stale = []
    for uuid, text in sorted(stale.items()):
        if uuid in claimed:
            continue  # another host's copy of the manifest is this snapshot's own
        if requested == "all":
            notes_stale.append(text)
        else:
            errors.append(text)
    if requested != "all":
        names = {c["manifest"]["vm"]["name"] for c in claimed.values()} | set(claimed)
        names |= {m["vm"]["name"] for h in per_host for m in per_host[h].get("manifests") or []
                  if m["vm"]["uuid"] in stale} | set(stale)
        for item in requested:
            if item not in names and not any("VM %s:" % item in r or r.endswith(" " + item) for r in refused):
                errors.append("VM %s has no valid manifest in snapshot %s on the datastores of %s" % (
                    item, snapshot.get("name"), ", ".join(sorted(per_host))))
    for host in sorted(per_host):
        for bad in per_host[host].get("invalid") or []:
            if requested == "all" or any(str(r) in str(bad.get("error")) or r == bad.get("uuid") for r in requested):
                errors.append("%s: %s" % (host, bad.get("error")))
    for uuid, c in sorted(claimed.items()):
        bad = _foreign_volume(c["manifest"], per_host[c["host"]].get("datastores"), c["host"])
        if bad:
            errors.append(bad)
            del claimed[uuid]
    # two manifests claiming one disk: one restore would roll back (and start) the other VM's disk
    owners: Dict[str, List[str]] = {}
    for uuid, c in sorted(claimed.items(), key=lambda kv: kv[1]["manifest"]["vm"]["name"]):
        for disk in c["manifest"].get("disks") or []:
            key = "%s:%s" % (c["host"], disk.get("source"))
            owners.setdefault(key, []).append(uuid)
    for key, uuids in sorted(owners.items()):
        if len(uuids) > 1:
            sharing = [claimed[u]["manifest"]["vm"]["name"] for u in uuids if u in claimed]
            if sharing:
                errors.append("VMs %s: their manifests name the same disk %s; refused" % (
                    ", ".join(sharing), key.split(":", 1)[1]))
            for u in uuids:
                claimed.pop(u, None)
    volumes: Dict[str, Dict[str, Any]] = {}
    hosts: Dict[str, List[Dict[str, Any]]] = {h: [] for h in per_host}
    for uuid, c in sorted(claimed.items(), key=lambda kv: kv[1]["manifest"]["vm"]["name"]):
        man = dict(c["manifest"])
        # the path in the volume from the host's own datastore record (its junction offset) and the vetted path
        # inside the datastore; never from the manifest
        man["disks"] = _disks_in_volume(man.get("disks") or [], per_host[c["host"]].get("datastores"))
        current = (per_host[c["host"]].get("current") or {}).get(uuid)
        was_running = current in ("running", "paused", "blocked") if current else \
            (man["vm"].get("state") in ("running", "paused", "blocked"))
        entry = {"name": man["vm"]["name"], "uuid": uuid, "current_state": current or "absent",
                 "start": "always" if was_running else "never", "xml": man["domain_xml_text"],
                 "nvram": man.get("nvram_file"), "datastores": man.get("datastores") or [],
                 "allowed_paths": sorted(man.get("allowed_paths") or []),
                 "disks": man.get("disks") or [], "backup_host": man.get("host"), "run_id": man.get("run_id")}
        hosts[c["host"]].append(entry)
        for disk in man.get("disks") or []:
            key = "%s:%s:%s" % (disk.get("controller"), disk.get("svm"), disk.get("volume"))
            vol = volumes.setdefault(key, {"key": key, "controller": disk.get("controller"), "svm": disk.get("svm"),
                                           "volume": disk.get("volume"), "datastore": disk.get("datastore"),
                                           "files": [], "luns": [], "vms": []})
            if disk.get("lun"):
                if disk["lun"] not in vol["luns"]:
                    vol["luns"].append(disk["lun"])
            elif disk.get("path_in_volume") and disk["path_in_volume"] not in vol["files"]:
                vol["files"].append(disk["path_in_volume"])
            if man["vm"]["name"] not in vol["vms"]:
                vol["vms"].append(man["vm"]["name"])
    # a volume whose own snapshot is gone comes back from a SnapMirror/SnapVault copy of it (catalog `sources`)
    sources = snapshot.get("sources") or {}
    for key, vol in volumes.items():
        if key in sources and key not in (snapshot.get("volumes") or []):
            vol["source"] = sources[key].get("location")
            vol["copy_controller"] = sources[key].get("copy_controller") or vol["controller"]
    for entries in hosts.values():
        for entry in entries:
            entry["from_copy"] = any(volumes.get("%s:%s:%s" % (d.get("controller"), d.get("svm"), d.get("volume")),
                                                 {}).get("source") for d in entry["disks"])
    have = set(snapshot.get("volumes") or []) | set(sources)
    for key in sorted(volumes):
        if key not in have:
            errors.append("snapshot %s does not exist on volume %s (needed by %s)" % (
                snapshot.get("name"), key, ", ".join(volumes[key]["vms"])))
    controllers: Dict[str, List[str]] = {}
    for vol in volumes.values():
        controllers.setdefault(vol["controller"], []).append("%s:%s" % (vol["svm"], vol["volume"]))
    if not claimed and not errors:
        errors.append("no VM to restore: snapshot %s has no manifest of %s" % (
            snapshot.get("name"), "any VM" if requested == "all" else ", ".join(requested)))
    notes = [n for h in sorted(per_host) for n in per_host[h].get("notes") or []
             if any(n.startswith("VM %s:" % c["manifest"]["vm"]["name"]) for c in claimed.values())] + notes_stale
    return {"hosts": hosts, "volumes": sorted(volumes.values(), key=lambda v: v["key"]), "notes": notes,
            "controllers": {c: sorted(v) for c, v in controllers.items()}, "errors": errors,
            "vms": [{"host": c["host"], "name": c["manifest"]["vm"]["name"], "uuid": u} for u, c in claimed.items()]}


def _disks_in_volume(disks: List[Mapping[str, Any]], datastores: Optional[List[Mapping[str, Any]]]
                     ) -> List[Dict[str, Any]]:
    """Each file disk with path_in_volume = the host's offset of its datastore + its path in the datastore."""
    offsets = {posixpath.normpath(str(d.get("path"))): _ds_paths.offset(d) for d in datastores or [] if d.get("path")}
    out = []
    for disk in disks:
        disk = dict(disk)
        if not disk.get("lun") and disk.get("path"):
            ds = posixpath.normpath(str(disk.get("datastore") or "/"))
            disk["path_in_volume"] = _ds_paths.in_volume(offsets.get(ds, _ds_paths.ROOT), str(disk["path"]))
        out.append(disk)
    return out


def _foreign_volume(man: Mapping[str, Any], datastores: Optional[List[Mapping[str, Any]]], host: str) -> Optional[str]:
    """Why a manifest's disk names a volume other than the one HOST maps its datastore to (None when all agree)."""
    if datastores is None:
        return None  # caller without the host's datastores (unit tests of the selection only)
    by_path: Dict[str, List[Mapping[str, Any]]] = {}
    for d in datastores:
        if d.get("path"):
            by_path.setdefault(posixpath.normpath(str(d.get("path"))), []).append(d)
    keys = ("controller", "svm", "volume")
    for idx, disk in enumerate(man.get("disks") or []):
        if disk.get("lun"):
            continue
        known = by_path.get(posixpath.normpath(str(disk.get("datastore"))))
        if not known:
            return "VM %s: disks[%d].datastore %s is not a datastore of %s; refused" % (
                man["vm"]["name"], idx, disk.get("datastore"), host)
        if not any(all(ds.get(k) == disk.get(k) for k in keys) for ds in known):
            return "VM %s: disks[%d] names volume %s:%s:%s, but %s maps datastore %s to %s; refused" % (
                man["vm"]["name"], idx, disk.get("controller"), disk.get("svm"), disk.get("volume"), host,
                known[0].get("path"), " or ".join(":".join(str(ds.get(k)) for k in keys) for ds in known))
    return None


def volume_restore_conflicts(plan: Mapping[str, Any], files_by_volume: Mapping[str, List[str]],
                             discovered: List[Mapping[str, Any]]) -> List[str]:
    """Why a whole-volume restore would roll back something else: files of other VMs, other files."""
    reasons = []
    restoring = {v["name"] for v in plan.get("vms", [])}
    for vol in plan.get("volumes", []):
        others = sorted({vm["name"] for vm in discovered for d in vm.get("disks", [])
                         if vol_key(d) == vol["key"] and vm["name"] not in restoring if d.get("volume")})
        if others:
            reasons.append("volume %s also holds disks of %s" % (vol["key"], ", ".join(others)))
        extra = sorted(set(files_by_volume.get(vol["key"], [])) - set(vol["files"]))
        if extra:
            reasons.append("volume %s holds %d other file(s) (%s)" % (vol["key"], len(extra), ", ".join(extra[:5])))
    return reasons


def _file_results(res: Mapping[str, Any], rollback: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Per file/LUN of one volume (docs/dev/faults.md#restore-partial): restored, rolled_back (from the safety snapshot),
    failed (with the error), not_attempted."""
    back = {r.get("path") for r in rollback.get("restored") or []}
    out = [{"path": r.get("path"), "type": r.get("type"),
            "result": "rolled_back" if r.get("path") in back else "restored", "error": None}
           for r in res.get("restored") or [] if r.get("type") != "volume"]
    out += [{"path": r.get("path"), "type": r.get("type"), "result": "failed", "error": r.get("error")}
            for r in res.get("failed_items") or []]
    out += [{"path": r.get("path"), "type": r.get("type"), "result": "not_attempted", "error": None}
            for r in res.get("not_attempted") or []]
    return out


def restore_outcome(plan: Mapping[str, Any], per_host: Mapping[str, Mapping[str, Any]],
                    disks: Mapping[str, Any], safety: Mapping[str, Any], snapshot: str,
                    rollback: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Report entries of a restore. per_host[host] = {"stop": loop result, "start": loop result, "error": text}.

    Per VM, details.existed says whether the domain was defined on the host before the restore (from the plan's
    state before it, kept across a resumed run; not from the define step, which sees what an interrupted first
    attempt defined) and details.shutdown how it was stopped; "shutdown" lists the VMs shut down."""
    rolled = {(r.get("vol") or {}).get("key"): r for r in (rollback or {}).get("results") or [] if not r.get("failed")}
    vol_ok: Dict[Optional[str], Any] = {}
    for res in (disks or {}).get("results") or []:
        vol = res.get("vol") or {}
        vol_ok[vol.get("key")] = res
    safety_by_ctrl = {r.get("item"): r for r in (safety or {}).get("results") or []}
    volumes = []
    for vol in plan.get("volumes", []):
        res = vol_ok.get(vol["key"])
        ok = bool(res) and not _failed(res)
        methods = sorted({str(r.get("method")) for r in (res or {}).get("restored") or []})
        sres = safety_by_ctrl.get(vol["controller"]) or {}
        volumes.append({"controller": vol["controller"], "svm": vol["svm"], "volume": vol["volume"], "ok": ok,
                        "snapshot": snapshot if ok else None, "method": ",".join(methods) or None,
                        "error": None if ok else ((res or {}).get("msg") or "not restored"),
                        "restored": [r.get("path") for r in (res or {}).get("restored") or []],
                        "files": _file_results(res or {}, rolled.get(vol["key"]) or {}),
                        "safety_snapshot": None if _failed(sres) else (sres.get("snapshots") or [{}])[0].get("name")})
    ok_vols = {v["controller"] + ":" + v["svm"] + ":" + v["volume"] for v in volumes if v["ok"]}
    vms = []
    shutdown = []
    for host, entries in plan.get("hosts", {}).items():
        h = per_host.get(host) or {}
        starts = {r.get("vm", {}).get("uuid"): r for r in (h.get("start") or {}).get("results") or []}
        stops = {r.get("vm", {}).get("uuid"): r for r in (h.get("stop") or {}).get("results") or []
                 if not r.get("skipped")}
        # a failed restore put the VM back (its previous XML, NVRAM and state) or left it stopped: say which
        later = {r.get("vm", {}).get("uuid"): r for step in ("stop", "back")
                 for r in (h.get(step) or {}).get("results") or [] if not r.get("skipped")}
        for vm in entries:
            start = starts.get(vm["uuid"]) or {}
            if not start and vm["uuid"] in later:
                start = dict(later[vm["uuid"]], failed=True)
            keys = sorted({"%s:%s:%s" % (d.get("controller"), d.get("svm"), d.get("volume")) for d in vm["disks"]})
            missing = [k for k in keys if k not in ok_vols]
            ok = not _failed(start) and not missing
            want_running = vm["start"] == "always"
            if ok and want_running and start.get("state") != "running":
                ok = False
            error = None
            if not ok:
                error = h.get("error") or start.get("msg") or (
                    "disks not restored on %s" % ", ".join(missing) if missing else "VM did not start")
            stop = (stops.get(vm["uuid"]) or {}).get("shutdown") or start.get("shutdown")
            if stop:
                shutdown.append(dict(stop, host=host, vm=vm["name"], uuid=vm["uuid"]))
            vms.append({"host": host, "name": vm["name"], "uuid": vm["uuid"], "ok": ok, "volumes": keys,
                        "state_before": vm["current_state"], "state_after": start.get("state"), "error": error,
                        "details": {"agent": start.get("agent"), "existed": vm["current_state"] != "absent",
                                    "shutdown": stop or None, "actions": start.get("actions"),
                                    "backup_host": vm.get("backup_host")}})
    return {"vms": vms, "volumes": volumes, "shutdown": shutdown}
