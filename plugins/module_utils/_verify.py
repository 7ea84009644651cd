# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Is a VM's backup really in the snapshot? Checked through the NFS `.snapshot/<name>/` view.

This module util is PRIVATE to the collection. It may change without notice.

Used twice with the same code: by the backup after the snapshot (before it says "OK") and by the restore's
pre-flight (before the safety snapshot and before any VM is stopped). Neither trusts the configuration: a
datastore path that is a symlink leaving its volume, or a directory inside it where another volume is
mounted, shows up here as files missing from the snapshot.

For a VM record ``{name, uuid, nvram, disks: [{target, source, format, datastore, path, lun}]}`` (a discover
record or a manifest) and a snapshot name, ``check_vm`` returns the paths that are missing, each with the
reason. What is checked, per datastore the VM uses (NFS):

- ``<datastore>/.snapshot/<snapshot>/.kvmsnap/<uuid>/manifest.json`` exists, parses, names this VM (UUID and
  name) and this snapshot (and run id, when given); ``domain.xml`` and, if the manifest has one, ``nvram``
  are there too;
- every file disk ``<datastore>/.snapshot/<snapshot>/<path in datastore>`` is a regular file reached without
  a symlink (a symlink inside a snapshot points at live data, or outside the volume), non-empty, and for
  raw images as large as the live image.

Disks on LUNs (no datastore) cannot be seen from the KVM host: the controller is asked (ontap_snapshot_info
``files``, delegated to the controller side) and its answer is passed in as ``lun_files``
(``{controller: [{svm, volume, path, present, type, size, lun_size}] or an error text}``); ``check_lun`` then
requires each LUN disk ``/vol/<volume>/<lun>`` to be in the snapshot as a LUN (or file) of the live LUN's size.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any, Dict, List, Mapping, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils import _ds_paths
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_rules import is_overlay_path

SNAPDIR = ".snapshot"
MANIFEST_DIR = ".kvmsnap"


def rel_in_datastore(disk: Mapping[str, Any]) -> Optional[str]:
    """Path of a file disk relative to its datastore ('/'-prefixed), from its source path when it lies under
    the datastore, else the recorded path; None for a LUN or an unmapped disk."""
    if disk.get("lun") or not disk.get("datastore"):
        return None
    source = disk.get("source")
    if source:
        rel = _ds_paths.rel_to(str(disk["datastore"]), str(source))
        if rel is not None:
            return rel
    path = disk.get("path")
    return _ds_paths.clean(path) if path else None


def _walk_no_symlink(root: str, rel: str) -> Optional[str]:
    """Why ROOT/REL cannot be trusted as a file of the snapshot, or None: every component below ROOT must exist
    and be no symlink, and the last must be a regular file. ROOT itself must be a real directory."""
    try:
        st = os.lstat(root)
    except OSError:
        return "%s does not exist" % root
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return "%s is not a directory of the snapshot" % root
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return "path %r is not a file path inside the datastore" % rel
    current = root
    for i, part in enumerate(parts):
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return "not in the snapshot"
        except OSError as exc:
            return "cannot be read (%s)" % exc.strerror
        if stat.S_ISLNK(st.st_mode):
            return "is a symlink in the snapshot (to %s): its data is not in the snapshot" % os.readlink(current)
        last = i == len(parts) - 1
        if not last and not stat.S_ISDIR(st.st_mode):
            return "%s is not a directory" % current
        if last and not stat.S_ISREG(st.st_mode):
            return "is not a regular file in the snapshot"
    return None


def snapshot_dir(datastore: str, snapshot: str, offset: str = "/") -> str:
    return _ds_paths.snapshot_dir(datastore, offset, snapshot)


def _size(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def check_disk(disk: Mapping[str, Any], snapshot: str, compare_live: bool = True) -> Optional[Dict[str, str]]:
    """{path, reason} when the file disk is not (fully) in the snapshot, else None. LUNs: None (not here)."""
    rel = rel_in_datastore(disk)
    if is_overlay_path(rel) or is_overlay_path(disk.get("source")):
        # the live state after the point in time (docs/dev/overlay.md): never verified or restored as a backup
        return {"path": str(disk.get("source") or rel), "reason": "disk %s is on the kvmsnap overlay %s: restores "
                "never use overlay files; the backup is its base image" % (disk.get("target"), disk.get("source") or rel)}
    if rel is None:
        if disk.get("lun") or not disk.get("source"):
            return None
        return {"path": str(disk.get("source")), "reason": "disk %s is on no datastore; nothing of it can be in a "
                "snapshot" % disk.get("target")}
    root = snapshot_dir(str(disk["datastore"]), snapshot, _ds_paths.disk_offset(disk))
    full = root + rel
    why = _walk_no_symlink(root, rel)
    if why is not None:
        return {"path": full, "reason": "disk %s (%s): %s" % (disk.get("target"), disk.get("source"), why)}
    size = _size(full) or 0
    if size == 0:
        return {"path": full, "reason": "disk %s: the copy in the snapshot is empty" % disk.get("target")}
    if compare_live and (disk.get("format") or "raw") == "raw" and disk.get("source"):
        live = _size(str(disk["source"]))
        # a raw image never changes size by itself; a different size means another file was snapshotted
        if live is not None and live != size:
            return {"path": full, "reason": "disk %s: %d bytes in the snapshot, %d bytes live (%s)"
                    % (disk.get("target"), size, live, disk.get("source"))}
    return None


def lun_snapshot_path(lun: str, snapshot: str) -> str:
    """'/vol/<volume>/<path>' of a LUN → its path in SNAPSHOT, '/vol/<volume>/.snapshot/<snapshot>/<path>'."""
    parts = str(lun).split("/", 3)
    if len(parts) < 4 or parts[1] != "vol":
        return str(lun)
    return "/vol/%s/%s/%s/%s" % (parts[2], SNAPDIR, snapshot, parts[3])


def check_lun(disk: Mapping[str, Any], snapshot: str, lun_files: Mapping[str, Any],
              compare_live: bool = True) -> Optional[Dict[str, str]]:
    """{path, reason} when the LUN disk is not in the snapshot according to its controller's answer in
    LUN_FILES, else None (also None for a disk that is no LUN)."""
    lun = disk.get("lun")
    if not lun:
        return None
    ctrl, svm = disk.get("controller"), disk.get("svm")
    where = "disk %s (LUN %s:%s on %s)" % (disk.get("target"), svm, lun, ctrl)
    path = "%s:%s:%s" % (ctrl, svm, lun_snapshot_path(str(lun), snapshot))
    answer = lun_files.get(str(ctrl)) if ctrl is not None else None
    if answer is None:
        return {"path": path, "reason": "%s: controller %s was not asked whether the LUN is in the snapshot"
                % (where, ctrl)}
    if isinstance(answer, str):
        return {"path": path, "reason": "%s: could not be checked in the snapshot: %s" % (where, answer)}
    entry = next((f for f in answer if f.get("path") == lun and (svm is None or f.get("svm") == svm)), None)
    if entry is None:
        return {"path": path, "reason": "%s: controller %s did not report it" % (where, ctrl)}
    if not entry.get("present"):
        return {"path": path, "reason": "%s: not in the snapshot" % where}
    if entry.get("type") not in (None, "lun", "file"):
        return {"path": path, "reason": "%s: is a %s in the snapshot, not a LUN" % (where, entry.get("type"))}
    size, live = entry.get("size"), entry.get("lun_size")
    if size == 0:
        return {"path": path, "reason": "%s: the copy in the snapshot is empty" % where}
    if compare_live and size is not None and live is not None and int(size) != int(live):
        return {"path": path, "reason": "%s: %d bytes in the snapshot, the LUN has %d bytes" % (where, size, live)}
    return None


def check_manifest(datastore: str, snapshot: str, uuid: str, name: Optional[str],
                   run_id: Optional[str] = None, offset: str = "/") -> List[Dict[str, str]]:
    """What is wrong with the VM's manifest in the snapshot of DATASTORE (empty list: it is there and right)."""
    root = snapshot_dir(datastore, snapshot, offset)
    rel = "/%s/%s/manifest.json" % (MANIFEST_DIR, uuid)
    full = root + rel
    why = _walk_no_symlink(root, rel)
    if why is not None:
        return [{"path": full, "reason": "manifest: %s" % why}]
    try:
        with open(full, "rb") as fh:
            doc = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        return [{"path": full, "reason": "manifest does not parse: %s" % exc}]
    vm = doc.get("vm") if isinstance(doc, dict) else None
    if not isinstance(vm, dict):
        return [{"path": full, "reason": "manifest has no VM record"}]
    wrong = []
    if str(vm.get("uuid") or "").lower() != uuid.lower():
        wrong.append("names VM UUID %s" % vm.get("uuid"))
    if name is not None and vm.get("name") != name:
        wrong.append("names VM %r" % vm.get("name"))
    if doc.get("snapshot") not in (None, snapshot):
        wrong.append("belongs to snapshot %r" % doc.get("snapshot"))
    if run_id and doc.get("run_id") not in (None, run_id):
        wrong.append("belongs to run %r" % doc.get("run_id"))
    if wrong:
        return [{"path": full, "reason": "manifest " + ", ".join(wrong)}]
    out = []
    extra = ["domain.xml"] + (["nvram"] if doc.get("nvram") else [])
    for fname in extra:
        frel = "/%s/%s/%s" % (MANIFEST_DIR, uuid, fname)
        why = _walk_no_symlink(root, frel)
        if why is not None:
            out.append({"path": root + frel, "reason": "%s of the manifest: %s" % (fname, why)})
    return out


def check_vm(vm: Mapping[str, Any], snapshot: str, run_id: Optional[str] = None, manifest: bool = True,
             compare_live: bool = True, lun_files: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """{name, uuid, protected, missing: [paths], reasons: [text]} for one VM and one snapshot.

    MANIFEST: also check the manifest of every datastore the VM uses (the backup; a restore reads the manifest
    itself). LIVE_SIZE: compare raw images with the live file (the backup, right after the snapshot).
    LUN_FILES: the controllers' answers for the LUN disks (see check_lun); None leaves LUN disks unchecked.
    """
    problems: List[Dict[str, str]] = []
    disks = [d for d in vm.get("disks") or [] if d.get("device") not in ("cdrom", "floppy")]
    for disk in disks:
        bad = check_disk(disk, snapshot, compare_live=compare_live)
        if bad is None and lun_files is not None:
            bad = check_lun(disk, snapshot, lun_files, compare_live=compare_live)
        if bad:
            problems.append(bad)
    if manifest and vm.get("uuid"):
        offsets = {str(d["datastore"]): _ds_paths.disk_offset(d) for d in disks if d.get("datastore") and not d.get("lun")}
        for ds in sorted(offsets):
            problems += check_manifest(ds, snapshot, str(vm["uuid"]), vm.get("name"), run_id, offsets[ds])
    return {"name": vm.get("name"), "uuid": vm.get("uuid"), "protected": not problems,
            "missing": [p["path"] for p in problems], "reasons": [p["reason"] for p in problems]}


def lun_files_wanted(vms: List[Mapping[str, Any]]) -> Dict[str, List[str]]:
    """Controller → ['svm:/vol/<volume>/<lun>'] of the LUN disks of VMS: what to ask each controller."""
    out: Dict[str, List[str]] = {}
    for vm in vms:
        for disk in vm.get("disks") or []:
            if disk.get("lun") and disk.get("controller") and disk.get("svm"):
                entry = "%s:%s" % (disk["svm"], disk["lun"])
                if entry not in out.setdefault(str(disk["controller"]), []):
                    out[str(disk["controller"])].append(entry)
    return out


def summary(host: str, snapshot: str, results: List[Mapping[str, Any]]) -> List[str]:
    """One line per VM whose data is not in the snapshot, for messages."""
    return ["%s: VM %s is not in snapshot %s: %s" % (host, r.get("name"), snapshot, "; ".join(
        "%s (%s)" % (p, why) for p, why in zip(r.get("missing") or [], r.get("reasons") or [])))
        for r in results if not r.get("protected")]
