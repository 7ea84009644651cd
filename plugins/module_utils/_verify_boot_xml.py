# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The domain XML of a throwaway boot copy of a backed-up VM (vm_verify); pure rules, no I/O.

This module util is PRIVATE to the collection. It may change without notice.

``copy_xml(xml_text, plan)`` turns the saved (untrusted, already policy-checked) domain XML of a VM into the XML
of its copy: a new name and UUID, no MAC of the original, no network but the isolated one named, every disk a
qcow2 overlay in the copy's own directory whose backing file is the read-only image in the snapshot, the NVRAM
in the copy's directory, the first serial port logged to a file there, the agent channel kept, and everything
that reaches the host beyond that (host devices, shares, vhost-user, graphics listeners, TPM state, vsock CIDs)
left out. ``disk_plan(xml_text)`` lists the disks a copy needs and the reasons a VM cannot be copied (a SAN LUN,
a disk type that is not understood). ``copy_paths_problems(xml, roots)`` is the last check before the copy
starts: every file its XML names lies under the copy's directory, the snapshot directories or the host's
firmware/boot directories.
"""

from __future__ import annotations

import os
import random
import re
import uuid as _uuid
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Mapping, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils import _domain_xml
from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError

COPY_PREFIX = "kvmsnap-verify-"
COPY_MARK = "kvmsnap verify copy"
MAX_NAME = 64
# devices a copy keeps as they are (what libvirt emulates itself, no host resource)
KEEP_DEVICES = ("emulator", "controller", "input", "video", "sound", "audio", "memballoon", "rng", "watchdog", "panic",
                "iommu", "hub")
# devices a copy never gets, with the reason shown in its notes
DROP_WHY = {
    "hostdev": "host device passthrough",
    "filesystem": "host directory share",
    "smartcard": "host smartcard access",
    "redirdev": "USB redirection from the host",
    "shmem": "host shared memory",
    "memory": "host memory backend",
    "lease": "host lock space",
    "nvram": "host NVRAM device",
    "crypto": "host crypto backend",
    "graphics": "a display listener on the host",
    "tpm": "TPM state of the original",
    "vsock": "the original's vsock CID",
    "parallel": "a host character device",
    "console": "the serial port below is the console",
    "pstore": "a host file",
}
FILE_DISK_DEVICES = ("disk",)
MEDIA_DEVICES = ("cdrom", "floppy")
DISK_FORMATS = ("raw", "qcow2")
AGENT_CHANNEL = _domain_xml.AGENT_CHANNEL
_NAME_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class VerifyXmlError(KvmsnapError, ValueError):
    """A VM cannot be copied; the message names the VM, the element and why."""


def copy_name(name: str, token: str) -> str:
    """`kvmsnap-verify-<token>-<name>` (libvirt names: at most MAX_NAME characters, no '/')."""
    safe = _NAME_SAFE.sub("_", name or "vm")
    return (COPY_PREFIX + token + "-" + safe)[:MAX_NAME]


def is_copy_name(name: Any) -> bool:
    return isinstance(name, str) and name.startswith(COPY_PREFIX)


def new_mac(rng: Optional[random.Random] = None) -> str:
    """A random locally administered MAC in QEMU's 52:54:00 range."""
    r = rng or random.SystemRandom()
    return "52:54:00:%02x:%02x:%02x" % (r.randrange(256), r.randrange(256), r.randrange(256))


def memory_mib(xml_text: str) -> int:
    """The memory a copy needs at most (<memory>, else <currentMemory>), MiB, rounded up."""
    root = _domain_xml.parse_root(xml_text)
    units = {"b": 1, "bytes": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": 1024 ** 2, "mib": 1024 ** 2,
             "mb": 1000 ** 2, "g": 1024 ** 3, "gib": 1024 ** 3, "gb": 1000 ** 3, "t": 1024 ** 4, "tib": 1024 ** 4}
    for tag in ("memory", "currentMemory"):
        el = root.find(tag)
        if el is not None and (el.text or "").strip():
            try:
                value = int((el.text or "").strip())
            except ValueError:
                raise VerifyXmlError("<%s>%s</%s> is not a number" % (tag, el.text, tag)) from None
            unit = units.get((el.get("unit") or "KiB").lower())
            if unit is None:
                raise VerifyXmlError("<%s unit=%r>: unit not understood" % (tag, el.get("unit")))
            return max(1, -(-value * unit // 1024 ** 2))
    raise VerifyXmlError("the domain XML has no <memory>")


def disk_plan(xml_text: str) -> Dict[str, Any]:
    """{disks: [{target, path, format}], san: [reasons], refused: [reasons]} of a saved domain XML.

    A file disk (device disk) becomes an overlay; cdrom/floppy media are ejected in the copy; a block device or a
    network/volume disk is a SAN LUN or storage the copy cannot reach read-only (``san``); anything else is
    refused (``refused``)."""
    root = _domain_xml.parse_root(xml_text)
    out: Dict[str, Any] = {"disks": [], "san": [], "refused": []}
    devices = root.find("devices")
    for idx, disk in enumerate(devices.findall("disk") if devices is not None else []):
        dtype, device = disk.get("type") or "file", disk.get("device") or "disk"
        target = disk.find("target")
        tdev = target.get("dev") if target is not None else None
        what = "<disk %s%s>" % (tdev or "#%d" % idx, " device=%s" % device if device != "disk" else "")
        if device in MEDIA_DEVICES:
            continue
        if device == "lun" or dtype == "block":
            out["san"].append("%s: a block device (SAN LUN); a LUN in a snapshot is not reachable from the host "
                              "without a LUN clone" % what)
            continue
        if dtype in ("network", "volume", "nvme", "vhostuser"):
            out["san"].append("%s: type=%s storage cannot be opened read-only from the snapshot" % (what, dtype))
            continue
        if dtype != "file" or device not in FILE_DISK_DEVICES:
            out["refused"].append("%s type=%s: not a disk type a copy understands (file disks only)" % (what, dtype))
            continue
        source = disk.find("source")
        path = source.get("file") if source is not None else None
        driver = disk.find("driver")
        fmt = (driver.get("type") if driver is not None else None) or "raw"
        if not path:
            out["refused"].append("%s: no source file" % what)
        elif fmt not in DISK_FORMATS:
            out["refused"].append("%s: format %s; allowed: %s" % (what, fmt, ", ".join(DISK_FORMATS)))
        elif not tdev:
            out["refused"].append("%s: no target device" % what)
        else:
            out["disks"].append({"target": tdev, "path": os.path.normpath(path), "format": fmt})
    return out


def _drop(parent: ET.Element, el: ET.Element, notes: List[str], why: str) -> None:
    parent.remove(el)
    notes.append("<%s> left out: %s" % (_domain_xml.local_name(el.tag), why))


def copy_xml(xml_text: str, plan: Mapping[str, Any]) -> Dict[str, Any]:
    """The copy's domain XML. PLAN: name, uuid (of the copy), original (name), snapshot, dir (the copy's directory),
    overlays {target: {path, backing, format}}, network (isolated network or None), nvram (path in dir or None),
    console_log (path in dir). Returns {xml, notes}; raises VerifyXmlError when a disk has no overlay."""
    root = _domain_xml.parse_root(xml_text)
    notes: List[str] = []
    for tag in ("name", "uuid", "title", "description", "metadata", "genid"):
        for el in root.findall(tag):
            root.remove(el)
    for sec in root.findall("seclabel"):
        _drop(root, sec, notes, "the host's default confinement applies")
    for tag, why in (("memoryBacking", "shared or file-backed guest memory (vhost-user, memfd)"),):
        for el in root.findall(tag):
            _drop(root, el, notes, why)
    name_el = ET.Element("name")
    name_el.text = plan["name"]
    uuid_el = ET.Element("uuid")
    uuid_el.text = plan["uuid"]
    desc = ET.Element("description")
    desc.text = "%s of %s from snapshot %s; destroyed after the check" % (COPY_MARK, plan["original"],
                                                                          plan["snapshot"])
    for i, el in enumerate((name_el, uuid_el, desc)):
        root.insert(i, el)
    for tag in ("on_poweroff", "on_reboot", "on_crash"):
        for el in root.findall(tag):
            root.remove(el)
        ev = ET.SubElement(root, tag)
        ev.text = "destroy"
    _os(root, plan, notes)
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    serial_done = False
    done: set = set()
    for el in list(devices):
        tag = _domain_xml.local_name(el.tag)
        if tag == "disk":
            _disk(el, plan, notes, done)
        elif tag == "interface":
            devices.remove(el)
            if plan.get("network"):
                iface = ET.SubElement(devices, "interface", {"type": "network"})
                ET.SubElement(iface, "mac", {"address": new_mac()})
                ET.SubElement(iface, "source", {"network": plan["network"]})
                model = el.find("model")
                if model is not None and model.get("type"):
                    ET.SubElement(iface, "model", {"type": model.get("type") or "virtio"})
                notes.append("<interface> on the isolated network %s with a new MAC" % plan["network"])
            else:
                notes.append("<interface type=%s> left out: no network (kvmsnap_verify_network not set)"
                             % el.get("type"))
        elif tag == "serial" and not serial_done:
            devices.remove(el)
            serial = ET.SubElement(devices, "serial", {"type": "file"})
            ET.SubElement(serial, "source", {"path": plan["console_log"]})
            target = el.find("target")
            ET.SubElement(serial, "target", {"port": (target.get("port") if target is not None else None) or "0"})
            serial_done = True
        elif tag == "channel":
            target = el.find("target")
            if target is not None and target.get("type") == "virtio" and target.get("name") == AGENT_CHANNEL:
                devices.remove(el)
                chan = ET.SubElement(devices, "channel", {"type": "unix"})  # libvirt picks the socket path
                ET.SubElement(chan, "target", {"type": "virtio", "name": AGENT_CHANNEL})
            else:
                _drop(devices, el, notes, "a channel other than the guest agent's")
        elif tag in KEEP_DEVICES:
            continue
        else:
            _drop(devices, el, notes, DROP_WHY.get(tag, "not a device a copy keeps"))
    missing = sorted(set(plan["overlays"]) - done)
    if missing:
        raise VerifyXmlError("VM %s: disk(s) %s of the plan are not in its domain XML" % (plan["original"],
                                                                                          ", ".join(missing)))
    return {"xml": ET.tostring(root, encoding="unicode"), "notes": notes}


def _os(root: ET.Element, plan: Mapping[str, Any], notes: List[str]) -> None:
    os_el = root.find("os")
    if os_el is None:
        return
    for nv in os_el.findall("nvram"):
        os_el.remove(nv)
        if plan.get("nvram"):
            keep = ET.SubElement(os_el, "nvram")
            keep.text = plan["nvram"]
        else:
            notes.append("<nvram> not copied (none in the backup): the firmware starts from its template")


def _disk(el: ET.Element, plan: Mapping[str, Any], notes: List[str], done: set) -> None:
    device = el.get("device") or "disk"
    target = el.find("target")
    tdev = target.get("dev") if target is not None else None
    if device in MEDIA_DEVICES:
        for src in el.findall("source"):
            el.remove(src)
        for child in el.findall("backingStore"):
            el.remove(child)
        notes.append("<disk %s device=%s> media ejected" % (tdev, device))
        return
    overlay = plan["overlays"].get(tdev)
    if overlay is None:
        raise VerifyXmlError("VM %s: <disk %s> has no overlay in the snapshot; it cannot be copied"
                             % (plan["original"], tdev))
    for child in list(el):
        if _domain_xml.local_name(child.tag) in ("source", "backingStore", "driver", "shareable", "readonly",
                                                 "serial", "wwn", "alias", "mirror", "encryption", "auth"):
            el.remove(child)
    el.set("type", "file")
    el.set("device", "disk")
    el.insert(0, ET.Element("driver", {"name": "qemu", "type": "qcow2"}))
    el.insert(1, ET.Element("source", {"file": overlay["path"]}))
    # the image in the snapshot: named explicitly (no probing), its format given, and never relabelled by libvirt
    backing = ET.Element("backingStore", {"type": "file"})
    ET.SubElement(backing, "format", {"type": overlay["format"]})
    src = ET.SubElement(backing, "source", {"file": overlay["backing"]})
    ET.SubElement(src, "seclabel", {"model": "dac", "relabel": "no"})
    ET.SubElement(backing, "backingStore")
    el.insert(2, backing)
    done.add(tdev)


def copy_paths_problems(xml_text: str, copy_dir: str, snapshot_dirs: List[str],
                        host_dirs: List[str]) -> List[str]:
    """Every host file the copy's XML names: disks and NVRAM under COPY_DIR, backing images under one of
    SNAPSHOT_DIRS, kernel/initrd/loader under HOST_DIRS, the serial log in COPY_DIR. The problems, or []."""
    from ansible_collections.kvmsnap.core.plugins.module_utils._domain_policy import path_under
    root = _domain_xml.parse_root(xml_text)
    problems: List[str] = []

    def need(path: Optional[str], roots: List[str], what: str) -> None:
        if path and path_under(path, roots) is None:
            problems.append("%s %s resolves outside %s" % (what, path, ", ".join(roots)))

    for disk in root.iter("disk"):
        src = disk.find("source")
        if src is not None:
            need(src.get("file") or src.get("dev") or src.get("dir") or "-", [copy_dir], "disk")
        for back in disk.iter("backingStore"):
            bsrc = back.find("source")
            if bsrc is not None:
                need(bsrc.get("file") or bsrc.get("dev") or "-", snapshot_dirs, "backing image")
    nv = root.findtext("os/nvram")
    need((nv or "").strip() or None, [copy_dir], "NVRAM")
    for tag in ("kernel", "initrd", "dtb", "loader"):
        need((root.findtext("os/" + tag) or "").strip() or None, host_dirs, "<%s>" % tag)
    for el in root.iter():
        if _domain_xml.local_name(el.tag) == "source" and el.get("path"):
            need(el.get("path"), [copy_dir], "character device")
    return problems


def new_uuid() -> str:
    return str(_uuid.uuid4())
