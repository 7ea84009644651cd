# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Backup manifests: what a snapshot needs to bring a VM back (domain XML, NVRAM, disk map, run data).

This module util is PRIVATE to the collection. It may change without notice.

Layout, inside each datastore the VM uses (so the ONTAP snapshot carries it), and in the local catalog
(`<state_dir>/catalog/<snapshot>/<uuid>/`, the only copy for SAN-only VMs)::

    <datastore>/.kvmsnap/<vm uuid>/manifest.json   {"kvmsnap_manifest": 1, "vm": {...}, "disks": [...], ...}
    <datastore>/.kvmsnap/<vm uuid>/domain.xml      inactive domain XML (as libvirt gives it)
    <datastore>/.kvmsnap/<vm uuid>/nvram           copy of the UEFI variable store, when the VM has one

In a snapshot: `<datastore>/.snapshot/<snapshot>/.kvmsnap/<vm uuid>/…`.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import time
from typing import Any, Callable, Dict, List, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils import _domain_policy, _domain_xml, _ds_paths, _manifest_sig
from ansible_collections.kvmsnap.core.plugins.module_utils._atomic_file import write_file_atomic
from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError

FORMAT = 1
DIR = ".kvmsnap"
# keys that load() and vet() add to a manifest read back; not part of the signed document
LOADED_KEYS = ("domain_xml_text", "nvram_file", "dir", "policy_rewritten", "allowed_paths")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class ManifestError(KvmsnapError):
    """A manifest cannot be written or is not valid; the message names the VM and the file."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _safe_uuid(uuid: Any) -> str:
    if not isinstance(uuid, str) or not UUID_RE.match(uuid):
        raise ManifestError("VM UUID %r is not a UUID; manifests are stored by UUID." % (uuid,))
    return uuid.lower()


def _mkdirs(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)


def write_file(path: str, data: bytes, mode: int = 0o600) -> bool:
    """Atomically write DATA to PATH unless it already holds it; True if the content changed."""
    try:
        with open(path, "rb") as fh:
            if fh.read() == data:
                return False
    except FileNotFoundError:
        pass
    write_file_atomic(path, data, mode)
    return True


def disk_sources(record: Dict[str, Any]) -> List[Dict[str, Optional[str]]]:
    """(target, source file/dev/network name, device) of every disk of a domain RECORD (_domain_xml)."""
    out = []
    for disk in record["disks"]:
        source = disk["source"].get("name") if disk["type"] == "network" else disk["path"]
        out.append({"target": disk["target"], "source": source, "device": disk["device"]})
    return out


def check_xml(xml_text: str, uuid: str, name: Optional[str] = None) -> Dict[str, Any]:
    """The saved XML's form and identity (_domain_xml.check_saved, as the restore checks it): same UUID, and
    name if given; returns its record. What it may contain: _domain_policy (vet)."""
    try:
        record, problems = _domain_xml.check_saved(xml_text, uuid, name)
    except _domain_xml.DomainXmlError as exc:
        raise ManifestError("domain XML of VM %s refused: %s (untrusted input)." % (name or uuid, exc)) from None
    if problems:
        raise ManifestError("domain XML of VM %s refused: %s." % (name or uuid, "; ".join(problems)))
    return record


def build(vm: Dict[str, Any], xml_text: str, nvram: Optional[bytes], run: Dict[str, Any]) -> Dict[str, Any]:
    """The manifest document of one VM (RUN: run_id, snapshot, policy, host, consistency, created, config_dir)."""
    uuid = _safe_uuid(vm.get("uuid"))
    check_xml(xml_text, uuid, vm.get("name"))
    disks = []
    for disk in vm.get("disks") or []:
        keys = ("target", "source", "format", "controller", "svm", "volume", "datastore", "path", "path_in_volume",
                "lun")
        disks.append({k: disk.get(k) for k in keys})
    return {
        "kvmsnap_manifest": FORMAT,
        "vm": {"name": vm.get("name"), "uuid": uuid, "state": vm.get("state")},
        "host": run.get("host"),
        "run_id": run.get("run_id"),
        "snapshot": run.get("snapshot"),
        "policy": run.get("policy"),
        "created": run.get("created"),
        "consistency_requested": run.get("consistency"),
        "config_dir": run.get("config_dir"),
        "domain_xml": {"file": "domain.xml", "sha256": sha256(xml_text.encode("utf-8"))},
        "nvram": ({"file": "nvram", "source": vm.get("nvram"), "sha256": sha256(nvram)} if nvram is not None else None),
        "disks": disks,
        "datastores": sorted({d["datastore"] for d in disks if d.get("datastore")}),
    }


def write(manifest: Dict[str, Any], xml_text: str, nvram: Optional[bytes], roots: List[str],
          key: Optional[str] = None) -> List[str]:
    """Write the three files under <root>/<uuid>/ for every root (signed with KEY); return the files that changed."""
    uuid = manifest["vm"]["uuid"]
    if key:
        manifest["signature"] = _manifest_sig.sign(manifest, key)
    body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    changed = []
    for root in roots:
        vm_dir = os.path.join(root, uuid)
        _mkdirs(vm_dir)
        for fname, data in (("domain.xml", xml_text.encode("utf-8")), ("nvram", nvram), ("manifest.json", body)):
            if data is None:
                continue
            path = os.path.join(vm_dir, fname)
            if write_file(path, data):
                changed.append(path)
    return changed


def datastore_root(datastore: str) -> str:
    return os.path.join(datastore, DIR)


def snapshot_root(datastore: str, snapshot: str, offset: str = "/") -> str:
    """The manifests of DATASTORE (at OFFSET inside its volume, see _ds_paths) as SNAPSHOT holds them."""
    return os.path.join(_ds_paths.snapshot_dir(datastore, offset, snapshot), DIR)


def catalog_root(state_dir: str, snapshot: str) -> str:
    return os.path.join(state_dir, "catalog", snapshot)


def load(vm_dir: str) -> Dict[str, Any]:
    """Read and check one manifest directory; returns the manifest plus `domain_xml_text`, `nvram_file`, `dir`."""
    path = os.path.join(vm_dir, "manifest.json")
    try:
        with open(path, "rb") as fh:
            manifest = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError("manifest %s cannot be read: %s" % (path, exc)) from None
    if not isinstance(manifest, dict) or manifest.get("kvmsnap_manifest") != FORMAT:
        raise ManifestError("%s is not a kvmsnap manifest (format %s expected)." % (path, FORMAT))
    vm = manifest.get("vm") or {}
    uuid = _safe_uuid(vm.get("uuid"))
    if os.path.basename(vm_dir.rstrip("/")).lower() != uuid:
        raise ManifestError("%s: directory name does not match the VM UUID %s." % (path, uuid))
    xml_path = os.path.join(vm_dir, "domain.xml")
    try:
        with open(xml_path, "rb") as fh:
            xml_bytes = fh.read()
    except OSError as exc:
        raise ManifestError("VM %s: %s cannot be read: %s" % (vm.get("name"), xml_path, exc)) from None
    if sha256(xml_bytes) != (manifest.get("domain_xml") or {}).get("sha256"):
        raise ManifestError("VM %s: %s does not match the hash in its manifest (tampered or incomplete)."
                            % (vm.get("name"), xml_path))
    try:
        xml_text = xml_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError("VM %s: %s is not UTF-8 text." % (vm.get("name"), xml_path)) from None
    record = check_xml(xml_text, uuid, vm.get("name"))
    nvram_file = None
    if manifest.get("nvram"):
        nvram_file = os.path.join(vm_dir, "nvram")
        try:
            with open(nvram_file, "rb") as fh:
                if sha256(fh.read()) != manifest["nvram"].get("sha256"):
                    raise ManifestError("VM %s: %s does not match the hash in its manifest."
                                        % (vm.get("name"), nvram_file))
        except OSError as exc:
            raise ManifestError("VM %s: %s cannot be read: %s" % (vm.get("name"), nvram_file, exc)) from None
    # the manifest's disks and the XML's disks must be the same ones (nothing outside the mapped volumes, and no
    # manifest entry that rolls back a file the VM does not use)
    mapped = {d.get("source") for d in manifest.get("disks") or []}
    in_xml = set()
    for disk in disk_sources(record):
        if disk["device"] in ("cdrom", "floppy") and not disk["source"]:
            continue
        in_xml.add(disk["source"])
        if disk["source"] not in mapped:
            raise ManifestError("VM %s: saved XML has disk %s (%s) that the manifest does not map to a volume; refused."
                                % (vm.get("name"), disk["target"], disk["source"]))
    for idx, disk in enumerate(manifest.get("disks") or []):
        if disk.get("source") not in in_xml:
            raise ManifestError("VM %s: manifest disks[%d].source %s is not a disk of its domain XML; refused."
                                % (vm.get("name"), idx, disk.get("source")))
    out = dict(manifest)
    out["domain_xml_text"] = xml_text
    out["nvram_file"] = nvram_file
    out["dir"] = vm_dir
    return out


def check_signature(manifest: Dict[str, Any], keys: List[str], unsigned_ok: List[str]) -> Optional[str]:
    """None when the signature verifies; a note when the user let this VM through by name; else ManifestError."""
    doc = {k: v for k, v in manifest.items() if k not in LOADED_KEYS}  # the document as written, as signed
    ok, reason = _manifest_sig.verify(doc, keys)
    if ok:
        return None
    vm = manifest.get("vm") or {}
    if vm.get("name") in unsigned_ok or str(vm.get("uuid")) in unsigned_ok:
        return "VM %s: signature: %s; accepted because kvmsnap_restore_unsigned_ok names it" % (vm.get("name"), reason)
    raise ManifestError("VM %s: signature: %s; refused (the manifest may have been edited in the snapshot). If this "
                        "backup is trusted, name the VM in kvmsnap_restore_unsigned_ok, or configure the key that "
                        "signed it (kvmsnap_manifest_keys_old)." % (vm.get("name"), reason))


def vet(manifest: Dict[str, Any], datastores: List[str], host: Optional[Dict[str, Any]],
        users: Optional[Callable[[List[str], str], Dict[str, List[str]]]] = None) -> Dict[str, Any]:
    """Check a loaded manifest against THIS host (never against what the manifest says of itself).

    DATASTORES: the host's datastore mount points (kvmsnap_datastores + discovery). Every disk must lie inside the
    datastore it was backed up from, which must be one of them; the XML passes _domain_policy with the datastores
    the VM uses as its allowed paths; no other VM of the host may use any of its disks (USERS(paths, uuid)).
    Returns the manifest with `domain_xml_text` as it will be defined, `allowed_paths` and `policy_rewritten`.
    """
    vm = manifest.get("vm") or {}
    name = vm.get("name")
    host_ds = {posixpath.normpath(d): d for d in datastores if d}
    allowed: List[str] = []
    for idx, disk in enumerate(manifest.get("disks") or []):
        field = "disks[%d]" % idx
        source = disk.get("source")
        if not isinstance(source, str) or not source.startswith("/"):
            raise ManifestError("VM %s: %s.source %r is not an absolute path; refused." % (name, field, source))
        if disk.get("lun"):
            if not source.startswith("/dev/"):
                raise ManifestError("VM %s: %s.source %s of a LUN is not a device under /dev; refused."
                                    % (name, field, source))
            allowed.append(source)
            continue
        ds = disk.get("datastore")
        if not isinstance(ds, str) or posixpath.normpath(ds) not in host_ds:
            raise ManifestError("VM %s: %s.datastore %r is not one of this host's datastores (%s; from "
                                "kvmsnap_datastores and discovery); refused." % (
                                    name, field, ds, ", ".join(sorted(host_ds)) or "none"))
        ds = posixpath.normpath(ds)
        rel = str(disk.get("path") or "")
        if posixpath.normpath(posixpath.join(ds, rel.lstrip("/"))) != posixpath.normpath(source):
            raise ManifestError("VM %s: %s.path %r inside datastore %s is not its source %s; refused."
                                % (name, field, rel, ds, source))
        if _domain_policy.path_under(source, [ds]) is None:
            raise ManifestError("VM %s: %s.source %s is outside its datastore %s (or has '..' or a symlink); refused."
                                % (name, field, source, ds))
        if ds not in allowed:
            allowed.append(ds)
    wanted = sorted({posixpath.normpath(d["datastore"]) for d in manifest.get("disks") or []
                     if d.get("datastore") and not d.get("lun")})
    listed = sorted(posixpath.normpath(str(d)) for d in manifest.get("datastores") or [])
    if listed != wanted:
        raise ManifestError("VM %s: datastores %s differ from the datastores of its disks (%s); refused."
                            % (name, listed, ", ".join(wanted) or "none"))
    result = _domain_policy.check(manifest["domain_xml_text"], allowed, host)
    if result["refused"]:
        raise ManifestError("VM %s: domain.xml refused by the domain allow-list (docs/security.md): %s." % (name, "; ".join(result["refused"])))
    if users is not None:
        paths = [d.get("source") for d in manifest.get("disks") or []]
        nvram = _domain_xml.parse_domain_xml(manifest["domain_xml_text"])["nvram"]
        busy = users([p for p in paths + [nvram] if p], str(vm.get("uuid")))
        for idx, path in enumerate(paths):
            if path in busy:
                raise ManifestError("VM %s: disks[%d].source %s is used by VM %s on this host; a restore would roll "
                                    "back that VM's data; refused." % (name, idx, path, ", ".join(busy[path])))
        if nvram in busy:
            raise ManifestError("VM %s: <os><nvram> %s is used by VM %s on this host; refused."
                                % (name, nvram, ", ".join(busy[nvram])))
    out = dict(manifest)
    out["domain_xml_text"] = result["xml"]
    out["policy_rewritten"] = ["VM %s: %s" % (name, r) for r in result["rewritten"]]
    out["allowed_paths"] = allowed
    return out


def find(roots: List[str]) -> Dict[str, str]:
    """uuid → manifest directory, over ROOTS (first root wins)."""
    found: Dict[str, str] = {}
    for root in roots:
        try:
            names = sorted(os.listdir(root))
        except OSError:
            continue
        for name in names:
            if UUID_RE.match(name) and name.lower() not in found and \
                    os.path.isfile(os.path.join(root, name, "manifest.json")):
                found[name.lower()] = os.path.join(root, name)
    return found


def protected(datastores: List[str], offsets: Dict[str, str], state_dir: str, snapshots: List[str]
              ) -> Dict[str, List[Dict[str, Any]]]:
    """snapshot → [{uuid, name, snapshot, run_id}] of the manifests each snapshot carries (datastores and local
    catalog), as their documents say. Read only to choose a snapshot: the one chosen is read again and checked in
    full (signature, policy). A manifest whose snapshot/run is another one's was left in .kvmsnap/ by an earlier
    run: it does not make the VM a backup of this snapshot (see plugin_utils/_catalog.protects)."""
    out: Dict[str, List[Dict[str, Any]]] = {}
    for snap in snapshots:
        roots = [snapshot_root(ds, snap, offsets.get(ds) or "/") for ds in datastores]
        roots.append(catalog_root(state_dir, snap))
        found = []
        for uuid, vm_dir in sorted(find(roots).items()):
            try:
                with open(os.path.join(vm_dir, "manifest.json"), "rb") as fh:
                    doc = json.loads(fh.read().decode("utf-8"))
            except (OSError, ValueError):
                continue
            vm = doc.get("vm") if isinstance(doc, dict) else None
            if isinstance(vm, dict):
                found.append({"uuid": uuid, "name": vm.get("name"), "snapshot": doc.get("snapshot"),
                              "run_id": doc.get("run_id")})
        out[snap] = found
    return out


def list_files(datastore: str, limit: int = 100000) -> List[str]:
    """Files under DATASTORE ('/'-prefixed, relative), without .snapshot and .kvmsnap; symlinks not followed."""
    out: List[str] = []
    for top, dirs, files in os.walk(datastore):
        if top == datastore:
            dirs[:] = [d for d in dirs if d not in (".snapshot", DIR)]
        for name in files:
            out.append("/" + os.path.relpath(os.path.join(top, name), datastore))
            if len(out) >= limit:
                return sorted(out)
    return sorted(out)


def catalog_volumes(state_dir: str, limit: int = 10000, controllers: Optional[List[str]] = None
                    ) -> Dict[str, List[Dict[str, Any]]]:
    """{volumes, ignored}: the distinct {controller, svm, volume, entry} named by the disks of the local catalog's
    manifests (ENTRY: the first catalog file naming it, {file, snapshot, policy, controller}).

    The state dir is shared by every inventory that runs on the host: with CONTROLLERS (the inventory's), entries
    naming another controller are not returned but listed in IGNORED (one per file and controller)."""
    seen: Dict[str, Dict[str, Any]] = {}
    ignored: List[Dict[str, Any]] = []
    wanted = set(controllers) if controllers is not None else None
    root = os.path.join(state_dir, "catalog")
    try:
        snapshots = sorted(os.listdir(root))
    except OSError:
        return {"volumes": [], "ignored": []}
    count = 0
    for snap in snapshots:
        for uuid in sorted(os.listdir(os.path.join(root, snap))) if os.path.isdir(os.path.join(root, snap)) else []:
            path = os.path.join(root, snap, uuid, "manifest.json")
            if not UUID_RE.match(uuid) or not os.path.isfile(path):
                continue
            count += 1
            if count > limit:
                break
            try:
                with open(path, "rb") as fh:
                    manifest = json.loads(fh.read().decode("utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(manifest, dict):
                continue
            others = set()
            for disk in manifest.get("disks") or []:
                if not (isinstance(disk, dict) and disk.get("controller") and disk.get("svm") and disk.get("volume")):
                    continue
                entry = {"file": path, "snapshot": manifest.get("snapshot") or snap, "policy": manifest.get("policy"),
                         "controller": disk["controller"]}
                if wanted is not None and disk["controller"] not in wanted:
                    others.add(disk["controller"])
                    continue
                key = "%s:%s:%s" % (disk["controller"], disk["svm"], disk["volume"])
                seen.setdefault(key, {"controller": disk["controller"], "svm": disk["svm"],
                                      "volume": disk["volume"], "entry": entry})
            ignored += [{"file": path, "snapshot": manifest.get("snapshot") or snap, "policy": manifest.get("policy"),
                         "controller": c} for c in sorted(others)]
    return {"volumes": [seen[k] for k in sorted(seen)], "ignored": ignored}


def catalog_prune(state_dir: str, existing: List[str], listed: List[str], keep: List[str], keep_days: int = 0,
                  now: Optional[float] = None, check_mode: bool = False) -> List[Dict[str, Any]]:
    """Remove local catalog entries (<state_dir>/catalog/<snapshot>/) that no longer serve a restore.

    An entry goes when its snapshot is not in EXISTING although every volume its manifests name is in LISTED
    (volumes whose snapshots were all listed, as "controller:svm:volume"), or, with KEEP_DAYS > 0, when it is
    older than that. Entries in KEEP (this run's) and entries naming a volume that was not listed (another
    inventory's controller, a volume this run did not look at) stay. Returns [{snapshot, path, reason}]."""
    now = time.time() if now is None else now
    root = os.path.join(state_dir, "catalog")
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    have, seen, out = set(existing), set(listed), []
    for snap in names:
        path = os.path.join(root, snap)
        if snap in keep or not os.path.isdir(path) or os.path.islink(path):
            continue
        volumes = set()
        for uuid in os.listdir(path):
            try:
                with open(os.path.join(path, uuid, "manifest.json"), "rb") as fh:
                    doc = json.loads(fh.read().decode("utf-8"))
            except (OSError, ValueError):
                continue
            for disk in (doc.get("disks") or []) if isinstance(doc, dict) else []:
                if isinstance(disk, dict) and disk.get("controller"):
                    volumes.add("%s:%s:%s" % (disk.get("controller"), disk.get("svm"), disk.get("volume")))
        reason = None
        if volumes and volumes <= seen and snap not in have:
            reason = "snapshot %s no longer exists on %s" % (snap, ", ".join(sorted(volumes)))
        elif keep_days > 0 and now - os.path.getmtime(path) > keep_days * 86400:
            reason = "older than kvmsnap_catalog_keep_days=%d" % keep_days
        if reason:
            if not check_mode:
                shutil.rmtree(path, ignore_errors=True)
            out.append({"snapshot": snap, "path": path, "reason": reason})
    return out
