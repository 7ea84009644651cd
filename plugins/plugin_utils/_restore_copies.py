# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A restore from a SnapMirror/SnapVault copy (the snapshot is gone from the volume itself): the manifests the
pre-flight must read are staged from the copy, below a run's staging directory of the volume, and then copied
into the KVM host's local catalog, where backup_manifest_info reads and checks them as any other (untrusted).

Which VMs: the UUID directories of .kvmsnap/ in the copy's snapshot, as ONTAP lists them (deleted VMs too: the
live .kvmsnap/ is not asked). The names come from storage: only directories named by a UUID are staged, anything
else is refused and said, and a listing of more than MAX_VMS of them is refused whole.

This plugin_util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any, Dict, List, Mapping

from ansible_collections.kvmsnap.core.plugins.module_utils import _ds_paths

MANIFEST_DIR = ".kvmsnap"
STAGING_DIR = ".kvmsnap-staging"
MANIFEST_FILES = ("manifest.json", "domain.xml", "nvram")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _key(ds: Mapping[str, Any]) -> str:
    return "%s:%s:%s" % (ds.get("controller"), ds.get("svm"), ds.get("volume"))


# at most this many VM directories per datastore are taken from a copy's listing
MAX_VMS = 1024


def _copy_dir(ds: Mapping[str, Any], source: Mapping[str, Any]) -> str:
    """svm:/vol/<copy>/<offset>/.kvmsnap: the manifest directory of datastore DS in its copy SOURCE."""
    copy_svm, _sep, copy_vol = str(source.get("location") or "").partition(":")
    return "%s:/vol/%s%s/%s" % (copy_svm, copy_vol, _ds_paths.offset(ds).rstrip("/"), MANIFEST_DIR)


def list_plan(datastores: List[Mapping[str, Any]], snapshot: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """One entry per datastore whose volume comes back from a copy: {controller, key, ds_path, source, ask (the
    .kvmsnap/ directory in the copy, for ontap_snapshot_info to list), copy_controller (where to ask)}."""
    sources = snapshot.get("sources") or {}
    return [{"controller": ds.get("controller"), "key": _key(ds), "ds_path": str(ds.get("path")),
             "source": sources[_key(ds)].get("location"), "ask": _copy_dir(ds, sources[_key(ds)]),
             "copy_controller": _copy_controller(ds, sources[_key(ds)])}
            for ds in datastores if _key(ds) in sources]


def _copy_controller(ds: Mapping[str, Any], source: Mapping[str, Any]) -> Any:
    """The controller that holds the copy: another cluster's for a DR-site vault, else the volume's own."""
    return source.get("copy_controller") or ds.get("controller")


def copy_vms(entry: Mapping[str, Any], answer: Mapping[str, Any]) -> Dict[str, Any]:
    """The VM directories the copy's listing (ontap_snapshot_info's ANSWER for a list_plan ENTRY) names:
    {uuids (lower case), refused: [why, per entry], error (None, or why the listing cannot be used)}."""
    where = "%s in snapshot of %s" % (entry.get("ask"), entry.get("key"))
    found = [f for f in answer.get("files") or [] if isinstance(f, Mapping)]
    uuids: List[str] = []
    refused: List[str] = []
    if not found or not found[0].get("present"):
        return {"uuids": [], "refused": [], "error": None}  # no manifests in that copy: nothing to stage
    if found[0].get("type") != "directory" or not isinstance(found[0].get("entries"), list):
        return {"uuids": [], "refused": [], "error": "%s is not a directory ONTAP lists (type %s; listing needs REST)"
                % (where, found[0].get("type"))}
    for item in found[0]["entries"]:
        name = item.get("name") if isinstance(item, Mapping) else None
        kind = item.get("type") if isinstance(item, Mapping) else None
        if not isinstance(name, str) or not UUID_RE.match(name):
            refused.append("%r: not a VM directory name (a UUID: hex digits and '-')" % (name,))
        elif kind != "directory":
            refused.append("%s: a %s, not a directory" % (name, kind))
        elif name.lower() not in uuids:
            uuids.append(name.lower())
    if found[0].get("entries_truncated") or len(uuids) > MAX_VMS:
        return {"uuids": [], "refused": refused, "error": "%s lists more than %d VM directories" % (where, MAX_VMS)}
    return {"uuids": sorted(uuids), "refused": refused, "error": None}


def stage_plan(datastores: List[Mapping[str, Any]], found: List[Mapping[str, Any]], snapshot: Mapping[str, Any],
               run_id: str, state_dir: str) -> List[Dict[str, Any]]:
    """One entry per datastore of this host whose volume comes back from a copy and whose copy names VMs:
    {controller, copy_controller (the controller that holds the copy), key, volume (svm:volume), source (the copy, svm:volume), files (paths in the volume), ask
    (svm:/vol/<copy>/<path>, for ontap_snapshot_info), destination_dir (in the volume), host_dir (the same, on the
    host), catalog: [{vm_dir, src, dest}]}.

    FOUND: the ontap_snapshot_info results of the list_plan entries (`entry`: the list_plan entry, `files`: the
    listing of the copy's .kvmsnap/), checked by copy_vms."""
    sources = snapshot.get("sources") or {}
    uuids: Dict[str, List[str]] = {}
    for res in found:
        listed = res.get("entry") or {}
        uuids[str(listed.get("ds_path"))] = copy_vms(listed, res)["uuids"]
    out: List[Dict[str, Any]] = []
    for ds in datastores:
        key = _key(ds)
        if key not in sources or not uuids.get(str(ds.get("path"))):
            continue
        offset = _ds_paths.offset(ds).rstrip("/")
        copy_svm, _sep, copy_vol = str(sources[key].get("location") or "").partition(":")
        staging = "%s/%s/%s" % (offset, STAGING_DIR, run_id)
        host_dir = posixpath.join(str(ds["path"]), STAGING_DIR, run_id)
        files, ask, catalog = [], [], []
        for uuid in uuids[str(ds["path"])]:
            vm_dir = "%s/%s/%s" % (offset, MANIFEST_DIR, uuid)
            for name in MANIFEST_FILES:
                files.append("%s/%s" % (vm_dir, name))
                ask.append("%s:/vol/%s%s/%s" % (copy_svm, copy_vol, vm_dir, name))
            catalog.append({"vm_dir": vm_dir, "src": host_dir + vm_dir + "/",
                            "dest": posixpath.join(state_dir, "catalog", str(snapshot.get("name")), uuid) + "/"})
        out.append({"controller": ds.get("controller"), "copy_controller": _copy_controller(ds, sources[key]),
                    "key": key, "volume": "%s:%s" % (ds.get("svm"), ds.get("volume")),
                    "source": sources[key].get("location"), "files": files, "ask": ask, "destination_dir": staging,
                    "host_dir": host_dir, "catalog": catalog})
    return out


def stage_files(entry: Mapping[str, Any], answer: Mapping[str, Any]) -> List[str]:
    """The files of a stage_plan ENTRY the copy's snapshot holds, per ontap_snapshot_info's ANSWER (files);
    a VM directory without its manifest.json and domain.xml is left out whole."""
    present = {"/" + str(f.get("path") or "").split("/", 3)[-1] for f in answer.get("files") or [] if f.get("present")}
    by_dir: Dict[str, List[str]] = {}
    for path, asked in zip(entry.get("files") or [], entry.get("ask") or []):
        in_copy = "/" + asked.split(":", 1)[1].split("/", 3)[-1]
        if in_copy in present:
            by_dir.setdefault(posixpath.dirname(path), []).append(path)
    keep: List[str] = []
    for _vm_dir, paths in sorted(by_dir.items()):
        names = {posixpath.basename(p) for p in paths}
        if {"manifest.json", "domain.xml"} <= names:
            keep += paths
    return keep


def stage_catalog(entry: Mapping[str, Any], answer: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The local catalog copies ({vm_dir, src, dest}) of the VM directories stage_files stages."""
    staged = {posixpath.dirname(p) for p in stage_files(entry, answer)}
    return [dict(c) for c in entry.get("catalog") or [] if c.get("vm_dir") in staged]
