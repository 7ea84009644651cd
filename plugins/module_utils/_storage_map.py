# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Storage mapping: which controller / SVM / volume (and path in it, or LUN) holds each VM disk.

This module util is PRIVATE to the collection. It may change without notice.

Order of the lookups for one disk:
1. explicit: ``vm_mapping`` (Snap Creator form, see _vm_mapping; applies to the VM's block and
   network disks: the LUN) and ``datastores`` (host directory → controller/SVM/volume, longest
   realpath'd prefix; applies to file disks);
2. NFS: the mount holding the file (_mountinfo) → server address (``addr=``) → the data LIF of a
   controller → SVM; export path + path below the mount → the SVM volume whose junction path is
   the longest prefix (junctions nest, the SVM root volume is ``/``) → path_in_volume;
3. SAN: block device → multipath WWID (_multipath) → LUN serial → the LUN with that serial.

The ONTAP facts come from ``StorageInventory``: built from the ``storage_inventory`` option
(``{controller, svm, lifs, volumes: [{name, junction_path}], luns: [{path, serial}]}``) or
gathered lazily through the ONTAP interface (``connect(params).list_ip_interfaces() /
list_volumes() / list_luns()``) for each entry of the ``controllers`` option.

``StorageMapper(inventory, datastores, vm_mapping, host_root).map_vm(vm)`` fills each disk of a
``vm`` record (from _domain_xml) with ``controller, svm, volume, path_in_volume, lun, mapped_by``
(or ``skipped``/``reason`` for a cdrom) and returns the VM's problems
``[{vm, uuid, disk, reason, severity}]`` (severity ``error`` for an unmapped disk or backing file,
``note`` for LVM on a LUN). ``shared_lun_problems(vms)`` finds LUNs used by several VMs.
``summarize(vms)`` builds the per-volume and per-datastore summaries.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
from typing import Any, Callable, Dict, List, Optional, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils import _ds_paths
from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError
from ansible_collections.kvmsnap.core.plugins.module_utils._mountinfo import (
    Mount,
    export_path_of,
    find_mount,
    read_mounts,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._multipath import resolve_block_device


class StorageMapError(KvmsnapError, ValueError):
    """Bad storage options (datastores, storage_inventory); the message names the entry."""


def _norm_addr(addr: Optional[str]) -> Optional[str]:
    if not addr:
        return None
    text = addr.strip().strip("[]")
    try:
        return str(ipaddress.ip_address(text.split("%")[0]))
    except ValueError:
        return text.lower()


def _clean_abs(path: str) -> str:
    return posixpath.normpath(path) if path.startswith("/") else path


def is_under(path: str, prefix: str) -> bool:
    if prefix == "/":
        return path.startswith("/")
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def longest_junction(volumes: List[Dict[str, Any]], path: str) -> Optional[Tuple[Dict[str, Any], str]]:
    """(volume, path_in_volume) for the volume whose junction path is the longest prefix of path.

    Unmounted volumes (junction_path None/'') never match; '/' (the SVM root volume) matches
    everything not under a deeper junction.
    """
    best = None
    best_len = -1
    path = _clean_abs(path)
    for vol in volumes:
        junction = vol.get("junction_path")
        if not junction:
            continue
        junction = _clean_abs(junction)
        if is_under(path, junction):
            length = 0 if junction == "/" else len(junction.rstrip("/"))
            if length > best_len:
                best, best_len = vol, length
    if best is None:
        return None
    junction = _clean_abs(best["junction_path"])
    rest = path if junction == "/" else path[len(junction.rstrip("/")):]
    return best, (rest if rest.startswith("/") else "/" + rest)


class StorageInventory:
    """ONTAP facts per controller: data LIF addresses → SVM, volumes with junction paths, LUNs."""

    def __init__(self) -> None:
        self.lifs: Dict[str, List[Tuple[str, str]]] = {}        # address -> [(controller, svm)]
        self.volumes: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}   # (controller, svm) -> volumes
        self.luns: List[Dict[str, Any]] = []                     # {controller, svm, volume, path, serial}
        self._pending: List[Tuple[str, Callable[[], Any]]] = []  # (controller, client factory)
        self.controllers: List[str] = []
        self.errors: List[str] = []

    @classmethod
    def from_option(cls, items: Optional[List[Dict[str, Any]]]) -> StorageInventory:
        inv = cls()
        for i, item in enumerate(items or [], start=1):
            ctrl = item.get("controller")
            svm = item.get("svm")
            if not ctrl or not svm:
                raise StorageMapError("storage_inventory entry %d: controller and svm are required." % i)
            if ctrl not in inv.controllers:
                inv.controllers.append(ctrl)
            for addr in item.get("lifs") or []:
                inv.add_lif(ctrl, svm, addr)
            for j, vol in enumerate(item.get("volumes") or [], start=1):
                if not isinstance(vol, dict) or not vol.get("name"):
                    raise StorageMapError("storage_inventory entry %d (%s/%s), volume %d: expected "
                                          "{name, junction_path}." % (i, ctrl, svm, j))
                inv.add_volume(ctrl, svm, vol["name"], vol.get("junction_path"))
            for j, lun in enumerate(item.get("luns") or [], start=1):
                if not isinstance(lun, dict) or not lun.get("path"):
                    raise StorageMapError("storage_inventory entry %d (%s/%s), LUN %d: expected {path, serial}."
                                          % (i, ctrl, svm, j))
                inv.add_lun(ctrl, svm, lun["path"], lun.get("serial"), lun.get("volume"))
        return inv

    def add_lif(self, controller: str, svm: str, address: str) -> None:
        key = _norm_addr(address)
        if key and (controller, svm) not in self.lifs.setdefault(key, []):
            self.lifs[key].append((controller, svm))

    def add_volume(self, controller: str, svm: str, name: str, junction_path: Optional[str]) -> None:
        self.volumes.setdefault((controller, svm), []).append({"name": name, "junction_path": junction_path})

    def add_lun(self, controller: str, svm: str, path: str, serial: Optional[str], volume: Optional[str] = None) -> None:
        if volume is None and path.startswith("/vol/"):
            volume = path.split("/")[2]
        self.luns.append({"controller": controller, "svm": svm, "volume": volume, "path": path, "serial": serial})

    def add_controller(self, name: str, client_factory: Callable[[], Any]) -> None:
        """Gather this controller's facts through the ONTAP interface when first needed."""
        if name not in self.controllers:
            self.controllers.append(name)
        self._pending.append((name, client_factory))

    def ensure(self) -> None:
        while self._pending:
            name, factory = self._pending.pop(0)
            try:
                client = factory()
                lifs = client.list_ip_interfaces()
                vols = client.list_volumes()
                luns = client.list_luns()
            except Exception as exc:  # OntapError/OptionError of the ONTAP interface name the host and the fix
                raise StorageMapError("controller %s: reading its data LIFs, volumes and LUNs failed: %s"
                                      % (name, exc)) from exc
            for lif in lifs:
                if lif.get("svm") and lif.get("address"):
                    self.add_lif(name, lif["svm"], lif["address"])
            for vol in vols:
                if vol.get("svm"):
                    self.add_volume(name, vol["svm"], vol["name"], vol.get("junction_path"))
            for lun in luns:
                self.add_lun(name, lun.get("svm"), lun.get("path"), lun.get("serial"), lun.get("volume"))

    def svms_for_address(self, address: Optional[str]) -> List[Tuple[str, str]]:
        self.ensure()
        key = _norm_addr(address)
        return list(self.lifs.get(key, [])) if key else []

    def volume_for(self, controller: str, svm: str, path: str) -> Optional[Tuple[Dict[str, Any], str]]:
        self.ensure()
        return longest_junction(self.volumes.get((controller, svm), []), path)

    def luns_by_serial(self, serial: str) -> List[Dict[str, Any]]:
        self.ensure()
        return [lun for lun in self.luns if lun.get("serial") == serial]

    def lun_by_path(self, controller: str, path: str, svm: Optional[str] = None) -> Optional[Dict[str, Any]]:
        self.ensure()
        for lun in self.luns:
            if lun["controller"] == controller and lun["path"] == path and (svm is None or lun["svm"] == svm):
                return lun
        return None

    @property
    def empty(self) -> bool:
        return not (self.lifs or self.volumes or self.luns or self._pending)


# The `datastores` option of vm_info and vm_backup (and the roles' kvmsnap_datastores): one schema, one parser.
DATASTORES_SPEC: Dict[str, Any] = dict(type="list", elements="dict", options=dict(
    path=dict(type="path", required=True),
    controller=dict(type="str"),
    svm=dict(type="str", required=True),
    volume=dict(type="str", required=True),
    path_in_volume=dict(type="str"),
))


def parse_datastores(items: Optional[List[Any]], controller: Optional[str] = None) -> List[Dict[str, Any]]:
    """datastores option → [{path (realpath'd), controller, svm, volume, index}], longest path first.

    CONTROLLER is the controller of an entry that names none (vm_backup: its one controller, option hostname);
    without it every entry must name its controller (vm_info, the roles)."""
    out: List[Dict[str, Any]] = []
    for i, item in enumerate(items or [], start=1):
        if not isinstance(item, dict):
            raise StorageMapError("datastores entry %d: %r; expected a dict {path, controller, svm, volume}."
                                  % (i, item))
        item = dict(item, controller=item.get("controller") or controller)
        missing = [k for k in ("path", "controller", "svm", "volume") if not item.get(k)]
        if missing:
            raise StorageMapError("datastores entry %d: %s missing; expected {path, controller, svm, volume}."
                                  % (i, ", ".join(missing)))
        path = str(item["path"])
        if not path.startswith("/"):
            raise StorageMapError("datastores entry %d: path %r must be absolute." % (i, path))
        real = os.path.realpath(path)
        out.append({"index": i, "path": real, "given_path": path, "controller": str(item["controller"]),
                    "svm": str(item["svm"]), "volume": str(item["volume"]),
                    "path_in_volume": _ds_paths.offset(item) if item.get("path_in_volume") else None})
    out.sort(key=lambda d: len(d["path"]), reverse=True)
    return out


def _loc(controller=None, svm=None, volume=None, path_in_volume=None, lun=None, mapped_by=None, datastore=None,
         datastore_in_volume=None):
    return {"controller": controller, "svm": svm, "volume": volume, "path_in_volume": path_in_volume, "lun": lun,
            "mapped_by": mapped_by, "datastore": datastore, "datastore_in_volume": datastore_in_volume}


class Unmapped(KvmsnapError):
    pass


class StorageMapper:
    """Maps the disks of VM records (_domain_xml) to their ONTAP locations; see the module doc.

    VM_MAPPING entries name a VM by name or UUID. With VM_MAPPING_COVERS_FILES (vm_backup, Snap Creator's meaning
    of KVM_VM_MAPPING: the entry names the VM's storage) a file disk of such a VM that neither a datastore nor
    the mount table maps is taken to be on the entry's volume; vm_info reports it unmapped instead."""

    def __init__(self, inventory: StorageInventory, datastores: List[Dict[str, Any]],
                 vm_mapping: List[Dict[str, Any]], host_root: str = "/", vm_mapping_covers_files: bool = False) -> None:
        self.inventory = inventory
        self.datastores = datastores
        self.vm_mapping = {e["vm"]: e for e in vm_mapping}
        self.vm_mapping_covers_files = vm_mapping_covers_files
        self.host_root = host_root or "/"
        self._mounts: Optional[List[Mount]] = None
        self._mount_error: Optional[str] = None
        self._dir_cache: Dict[str, str] = {}

    # -- lookups ------------------------------------------------------------------------------------
    def _real(self, path: str) -> str:
        if self.host_root not in ("", "/"):
            return _clean_abs(path)
        # realpath(dir)/name equals realpath(path) when name is no symlink: one lstat per file, and one
        # realpath per directory (1000 VMs share few directories)
        head, name = os.path.split(path)
        if not name or name in (".", "..") or os.path.islink(path):
            return os.path.realpath(path)
        real_dir = self._dir_cache.get(head)
        if real_dir is None:
            real_dir = self._dir_cache[head] = os.path.realpath(head)
        return os.path.join(real_dir, name)

    def mounts(self) -> List[Mount]:
        if self._mounts is None:
            try:
                self._mounts = read_mounts(self.host_root)
            except OSError as exc:
                self._mount_error = str(exc)
                self._mounts = []
        return self._mounts

    def _datastore_problem(self, ds: Dict[str, Any], real: str) -> Optional[str]:
        """Why a file under datastore DS (by realpath) is not in DS's volume, or None.

        A configured datastore is a promise that the directory is the volume; it is kept only where the mount
        table and the file system agree: (1) the datastore path is a symlink whose target is no volume root
        (no ONTAP .snapshot directory there) - its files are not in the volume's snapshots; (2) the file is on
        another mount nested below the datastore (another volume, an export of another server, a local disk).
        """
        if self.host_root not in ("", "/"):
            return None  # a copied tree (tests, chroot): no realpath, no mount table of its own
        if ds["path"] != _clean_abs(ds["given_path"]) and not os.path.isdir(os.path.join(ds["path"], ".snapshot")):
            return ("datastore %s is a symlink to %s, which is not the root of volume %s:%s (no .snapshot directory "
                    "there), so its files are not in that volume's snapshots; set the datastore path to the "
                    "volume's mount point" % (ds["given_path"], ds["path"], ds["svm"], ds["volume"]))
        mounts = self.mounts()
        ds_mount = find_mount(mounts, ds["path"])
        file_mount = find_mount(mounts, real)
        if ds_mount is not None and file_mount is not None and file_mount.mount_point != ds_mount.mount_point \
                and is_under(file_mount.mount_point, ds["path"]) and file_mount.mount_point != ds["path"]:
            return ("%s is under datastore %s (volume %s:%s) but on another mount, %s (%s %s), so it is not in "
                    "that volume's snapshots" % (real, ds["given_path"], ds["svm"], ds["volume"],
                                                 file_mount.mount_point, file_mount.fstype, file_mount.source))
        return None

    def _nested_junction(self, ds: Dict[str, Any], real: str) -> Optional[Dict[str, Any]]:
        """The location of a file of an NFS datastore that lies below a deeper volume junction, else None.

        One NFS mount shows every volume junctioned below its export (ONTAP junctions nest), but a snapshot of
        the datastore's volume holds none of them. Only when the mount table maps the datastore root itself to
        the configured volume (otherwise the explicit entry wins, as documented) is the file moved to the
        volume whose junction really holds it; its datastore is then that volume's root on this host.
        """
        mount = find_mount(self.mounts(), real)
        if mount is None or not mount.is_nfs or self.inventory.empty:
            return None
        try:
            root = self._locate_by_mount(ds["path"])
            here = self._locate_by_mount(real)
        except (Unmapped, StorageMapError):
            return None
        same = (root["controller"], root["svm"], root["volume"]) == (ds["controller"], ds["svm"], ds["volume"])
        if not same or here["volume"] == root["volume"]:
            return None
        rest = here["path_in_volume"] or "/"
        if real.endswith(rest) and rest != "/":
            here["datastore"] = real[:-len(rest)] or "/"
            here["datastore_in_volume"] = "/"
        return here

    def _offset(self, ds: Dict[str, Any]) -> str:
        """Where a configured datastore lies inside its volume: its path_in_volume; without one, what the mount
        table says when it maps the directory to the same volume (an NFS mount of the whole volume with the
        datastore in a subdirectory of it), else the root. A path_in_volume the mount table contradicts is an
        error: every restore would write the wrong file."""
        if "offset" in ds:
            return ds["offset"]
        found = None
        mount = find_mount(self.mounts(), ds["path"])
        if mount is not None and mount.is_nfs and not self.inventory.empty:
            try:
                loc = self._locate_by_mount(ds["path"])
            except (Unmapped, StorageMapError):
                loc = None
            if loc and (loc["svm"], loc["volume"]) == (ds["svm"], ds["volume"]):
                found = _ds_paths.clean(loc["path_in_volume"])
        given = ds.get("path_in_volume")
        if given and found and given != found:
            raise Unmapped("datastore %s: path_in_volume %s, but the mount table shows it at %s of volume %s:%s; "
                           "fix path_in_volume (or leave it out)" % (ds["given_path"], given, found, ds["svm"],
                                                                     ds["volume"]))
        ds["offset"] = given or found or _ds_paths.ROOT
        return ds["offset"]

    def locate_file(self, path: str) -> Dict[str, Any]:
        real = self._real(path)
        for ds in self.datastores:
            if is_under(real, ds["path"]):
                problem = self._datastore_problem(ds, real)
                if problem is None:
                    nested = self._nested_junction(ds, real)
                    if nested is not None:
                        return nested
                    rest = _ds_paths.rel_to(ds["path"], real) or "/"
                    offset = self._offset(ds)
                    return _loc(ds["controller"], ds["svm"], ds["volume"], _ds_paths.in_volume(offset, rest),
                                mapped_by="datastores", datastore=ds["given_path"], datastore_in_volume=offset)
                try:
                    # the volume that really holds it, when the mount table can tell (an NFS mount of ONTAP)
                    return self._locate_by_mount(real)
                except Unmapped:
                    raise Unmapped("%s; the mount table maps it to no ONTAP volume either: move the file onto "
                                   "the volume or add the directory that really holds it to datastores" % problem
                                   ) from None
        return self._locate_by_mount(real)

    def _locate_by_mount(self, real: str) -> Dict[str, Any]:
        mount = find_mount(self.mounts(), real)
        if mount is None:
            raise Unmapped("%s is in no datastore and no mount holds it%s; add its directory to datastores"
                           % (real, " (%s)" % self._mount_error if self._mount_error else ""))
        if not mount.is_nfs:
            raise Unmapped("%s is on %s (%s at %s), not on an NFS datastore and in no configured datastore; "
                           "move it to an ONTAP datastore or add its directory to datastores"
                           % (real, mount.source, mount.fstype, mount.mount_point))
        address = mount.nfs_address
        if self.inventory.empty:
            raise Unmapped("%s is on NFS %s (mounted at %s) but no controllers/storage_inventory were given to map "
                           "it to a volume" % (real, mount.source, mount.mount_point))
        svms = self.inventory.svms_for_address(address)
        if not svms:
            raise Unmapped("%s is on NFS %s (server address %s), which is no data LIF of the known controllers (%s)"
                           % (real, mount.source, address or "unknown: no addr= option",
                              ", ".join(self.inventory.controllers) or "none"))
        if len(svms) > 1:
            raise Unmapped("NFS server address %s of %s belongs to several SVMs: %s"
                           % (address, real, ", ".join("%s/%s" % s for s in svms)))
        controller, svm = svms[0]
        export_path = export_path_of(mount, real)
        found = self.inventory.volume_for(controller, svm, export_path or "/")
        if found is None:
            raise Unmapped("%s: export path %s on %s/%s is under no volume junction path"
                           % (real, export_path, controller, svm))
        vol, rest = found
        # the mount may show a subdirectory of the volume (svm:/junction/sub/dir): its offset is what the file's
        # path in the volume has beyond its path below the mount point
        offset = _ds_paths.offset_from(rest, _ds_paths.rel_to(mount.mount_point, real))
        return _loc(controller, svm, vol["name"], rest, mapped_by="nfs", datastore=mount.mount_point,
                    datastore_in_volume=offset)

    def _entry_loc(self, entry: Dict[str, Any], lun: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        """The location a vm_mapping ENTRY names (its LUN as LUN, when the disk is that LUN)."""
        svm = entry.get("svm")
        known = None if self.inventory.empty else self.inventory.lun_by_path(entry["controller"], entry["path"], svm)
        if known is not None:
            if lun is not None:
                lun["serial"] = known.get("serial")
            svm = svm or known.get("svm")
        return _loc(entry["controller"], svm, entry.get("volume"), None, lun, mapped_by="vm_mapping")

    def locate_block(self, vm: str, path: Optional[str]) -> Tuple[Dict[str, Any], List[str]]:
        notes: List[str] = []
        entry = self.vm_mapping.get(vm)
        if entry is not None:
            lun: Dict[str, Any] = {"path": entry["path"], "serial": None}
            loc = self._entry_loc(entry, lun)
            if path and path.startswith("/dev/"):
                dev = resolve_block_device(path, self.host_root)
                if dev.get("serial") and lun["serial"] and dev["serial"] != lun["serial"]:
                    raise Unmapped("vm_mapping puts VM %s on %s:%s (LUN serial %s), but its disk %s is WWID %s "
                                   "(serial %s); fix vm_mapping" % (vm, entry["controller"], entry["path"],
                                                                    lun["serial"], path, dev["wwid"], dev["serial"]))
                if dev.get("lvm"):
                    notes.append("LVM logical volume on LUN %s: the snapshot covers the whole LUN" % entry["path"])
            return loc, notes
        if not path or not path.startswith("/"):
            raise Unmapped("%s is not a local block device and the VM has no vm_mapping entry" % path)
        dev = resolve_block_device(path, self.host_root)
        if not dev.get("serial"):
            raise Unmapped("block device %s: %s; add the VM to vm_mapping" % (path, dev.get("error")))
        if self.inventory.empty:
            raise Unmapped("block device %s is LUN serial %s (WWID %s), but no controllers/storage_inventory were "
                           "given to find the LUN" % (path, dev["serial"], dev["wwid"]))
        luns = self.inventory.luns_by_serial(dev["serial"])
        if not luns:
            raise Unmapped("block device %s is WWID %s (serial %s), which is no LUN of the known controllers (%s)"
                           % (path, dev["wwid"], dev["serial"], ", ".join(self.inventory.controllers) or "none"))
        if len(luns) > 1:
            raise Unmapped("block device %s: serial %s matches several LUNs: %s" % (
                path, dev["serial"], ", ".join("%s:%s" % (x["controller"], x["path"]) for x in luns)))
        lun = luns[0]
        if dev.get("lvm"):
            notes.append("LVM logical volume on LUN %s: the snapshot covers the whole LUN" % lun["path"])
        if dev.get("partition"):
            notes.append("partition %s of LUN %s" % (dev["partition"], lun["path"]))
        return _loc(lun["controller"], lun["svm"], lun["volume"], None,
                    {"path": lun["path"], "serial": lun["serial"], "wwid": dev["wwid"]}, mapped_by="san"), notes

    # -- per VM ---------------------------------------------------------------------------------------
    def _locate_vm_file(self, key: str, path: str) -> Dict[str, Any]:
        try:
            return self.locate_file(path)
        except Unmapped:
            if not self.vm_mapping_covers_files or key not in self.vm_mapping:
                raise
            return self._entry_loc(self.vm_mapping[key], None)

    def map_vm(self, vm: Dict[str, Any]) -> List[Dict[str, Any]]:
        problems: List[Dict[str, Any]] = []
        # the vm_mapping entry of the VM: by name, else by UUID
        key = vm["name"] if vm["name"] in self.vm_mapping or vm.get("uuid") not in self.vm_mapping else vm["uuid"]

        def problem(disk: Optional[str], reason: str, severity: str = "error") -> None:
            problems.append({"vm": vm["name"], "uuid": vm.get("uuid"), "disk": disk, "reason": reason,
                             "severity": severity})

        for disk in vm["disks"]:
            label = disk.get("target") or disk.get("path")
            disk.update(_loc())
            disk["skipped"] = False
            disk["reason"] = None
            disk["notes"] = []
            if disk["device"] in ("cdrom", "floppy"):
                disk["skipped"] = True
                disk["reason"] = "%s device (%s): not backed up; detach ISO images before restoring" % (
                    disk["device"], disk.get("path") or "empty")
                continue
            if disk.get("path") is None:
                disk["reason"] = "disk %s of type %s has no source path" % (label, disk["type"])
                problem(label, disk["reason"])
                continue
            try:
                notes: List[str] = []
                if disk["type"] == "file":
                    loc = self._locate_vm_file(key, disk["path"])
                elif disk["type"] == "block" or (disk["type"] == "network" and key in self.vm_mapping):
                    loc, notes = self.locate_block(key, disk["path"] if disk["type"] == "block" else None)
                else:
                    raise Unmapped("%s disk (%s) is not on an ONTAP volume this collection can snapshot; add the VM "
                                   "to vm_mapping if it is an ONTAP LUN" % (disk["type"], disk["path"]))
            except Unmapped as exc:
                disk["reason"] = "VM %s disk %s: %s" % (vm["name"], label, exc)
                problem(label, disk["reason"])
                continue
            disk.update(loc)
            disk["notes"] = notes
            for note in notes:
                if note.startswith("LVM"):
                    problem(label, "VM %s disk %s: %s" % (vm["name"], label, note), "note")
            for element in disk.get("backing_chain") or []:
                if element.get("type") != "file" or not element.get("path"):
                    continue
                try:
                    bloc = self._locate_vm_file(key, element["path"])
                except Unmapped as exc:
                    element.update(_loc())
                    problem(label, "VM %s disk %s: backing file %s: %s" % (vm["name"], label, element["path"], exc))
                    continue
                element.update(bloc)
                if (bloc["controller"], bloc["svm"], bloc["volume"]) != (loc["controller"], loc["svm"], loc["volume"]):
                    disk["notes"].append("backing file %s is on another volume (%s/%s/%s); it is snapshotted too"
                                         % (element["path"], bloc["controller"], bloc["svm"], bloc["volume"]))
        return problems


def volumes_of(vm: Dict[str, Any]) -> List[Tuple[str, Optional[str], str]]:
    """(controller, svm, volume) of every disk and backing file of VM (a record map_vm filled), in disk order."""
    out: List[Tuple[str, Optional[str], str]] = []
    for disk in vm["disks"]:
        for el in [disk] + list(disk.get("backing_chain") or []):
            if el.get("controller") and el.get("volume"):
                ref = (el["controller"], el.get("svm"), el["volume"])
                if ref not in out:
                    out.append(ref)
    return out


def shared_lun_problems(vms: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Several VMs on one LUN: none of them can be restored alone (Snap Creator refused it too)."""
    users: Dict[Tuple[str, str], List[Tuple[Dict[str, Any], str]]] = {}
    for vm in vms:
        for disk in vm["disks"]:
            lun = disk.get("lun")
            if lun and disk.get("controller"):
                key = (disk["controller"], lun["path"])
                if all(v is not vm for v, _label in users.get(key, [])):
                    users.setdefault(key, []).append((vm, disk.get("target") or disk.get("path")))
    problems = []
    for (ctrl, path), entries in sorted(users.items()):
        if len(entries) < 2:
            continue
        names = ", ".join(v["name"] for v, _label in entries)
        for vm, label in entries:
            problems.append({"vm": vm["name"], "uuid": vm.get("uuid"), "disk": label, "severity": "error",
                             "reason": "LUN %s:%s is used by several VMs (%s); a LUN snapshot cannot be restored for "
                                       "one VM alone" % (ctrl, path, names)})
    return problems


def summarize(vms: List[Dict[str, Any]]) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """(volumes, datastores): per controller/svm/volume, and per host datastore directory, which VMs."""
    volumes: Dict[Tuple[str, str, str], Dict[str, Any]] = {}
    datastores: Dict[str, Dict[str, Any]] = {}
    seen: set = set()  # (kind, key, item) already listed: keeps the summaries linear in size
    for vm in vms:
        for disk in vm["disks"]:
            elements = [disk] + [b for b in disk.get("backing_chain") or [] if b.get("controller")]
            for el in elements:
                if not el.get("controller") or not el.get("volume"):
                    continue
                key = (el["controller"], el.get("svm") or "", el["volume"])
                entry = volumes.setdefault(key, {"controller": key[0], "svm": el.get("svm"), "volume": key[2],
                                                 "vms": [], "luns": [], "paths": []})
                for kind, item in (("vms", vm["name"]), ("luns", (el.get("lun") or {}).get("path")),
                                   ("paths", el.get("path_in_volume"))):
                    if item and (kind, key, item) not in seen:
                        seen.add((kind, key, item))
                        entry[kind].append(item)
                if el.get("datastore"):
                    ds = datastores.setdefault(el["datastore"], {"path": el["datastore"], "controller": el["controller"],
                                                                 "svm": el.get("svm"), "volume": el["volume"],
                                                                 "path_in_volume": el.get("datastore_in_volume") or "/",
                                                                 "mapped_by": el.get("mapped_by"), "vms": []})
                    if ("ds", el["datastore"], vm["name"]) not in seen:
                        seen.add(("ds", el["datastore"], vm["name"]))
                        ds["vms"].append(vm["name"])
    return ([volumes[k] for k in sorted(volumes)], [datastores[k] for k in sorted(datastores)])
