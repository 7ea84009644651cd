# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Restore as a new VM: the new name, the new file paths and the rewritten domain XML.

This module util is PRIVATE to the collection. It may change without notice.

A copy restored next to its original must share nothing writable with it: a new name and UUID, new MAC
addresses, every writable disk in a new file, its own NVRAM file, no fixed display port and no agent socket
path of the original. The rules are pure functions, used on the controller (the restore role's plan) and on the
KVM host (vm_restore ``as_new``), so both sides agree on every name and path.

- ``new_names(value, names, field)``: ``kvmsnap_restore_as`` read as one new name (one VM) or a suffix
  (starts with ``-``, ``_`` or ``.``; several VMs) -> {old name: new name}, each a valid libvirt domain name.
- ``new_path(path, old_name, new_name)``: the file next to PATH for the copy (``web1.qcow2`` ->
  ``web1-copy.qcow2``; a file whose name does not start with the VM's name gets the new name as prefix).
- ``rewrite_xml(xml, new_name, new_uuid, disk_paths, nvram_path)``: the copy's domain XML.
"""

from __future__ import annotations

import os
import random
import re
import uuid as _uuid
import xml.etree.ElementTree as ET
from typing import Any, Callable, Dict, List, Mapping, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError

SUFFIX_START = ("-", "_", ".")
MAX_NAME = 64
MAX_BASENAME = 255
# a new domain name: letters, digits and . _ + - (no '/', no white space), not starting with '.' or '-'
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$")
_SUFFIX_RE = re.compile(r"^[-_.][A-Za-z0-9._+-]*[A-Za-z0-9]$")
NAME_FORM = ("1-%d characters from letters, digits and . _ + - (not starting with . or -)" % MAX_NAME)
SUFFIX_FORM = "a suffix starting with -, _ or . followed by letters, digits and . _ + - (e.g. -copy)"


class RestoreAsError(KvmsnapError, ValueError):
    """A new name, path or the copy's XML is refused; the message names the field, the VM and the rule."""


def is_suffix(value: Any) -> bool:
    return isinstance(value, str) and value[:1] in SUFFIX_START


def check_name(name: Any, field: str, what: str = "the new name") -> str:
    """NAME as a libvirt domain name of the allowed form, or RestoreAsError naming FIELD."""
    if not isinstance(name, str) or not name:
        raise RestoreAsError("%s: %s is empty; allowed: %s." % (field, what, NAME_FORM))
    if len(name) > MAX_NAME or not _NAME_RE.match(name):
        raise RestoreAsError("%s: %s %r is not a valid VM name; allowed: %s." % (field, what, name, NAME_FORM))
    return name


def new_names(value: Any, names: List[str], field: str = "kvmsnap_restore_as") -> Dict[str, str]:
    """{old name: new name} for the VMs NAMES. VALUE: one new name (exactly one VM) or a suffix."""
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise RestoreAsError("%s: %r is not valid; allowed: a new VM name (one VM) or %s." % (field, value, SUFFIX_FORM))
    if not names:
        raise RestoreAsError("%s: no VM selected to restore as a new VM." % field)
    if is_suffix(value):
        if not _SUFFIX_RE.match(value) or len(value) > MAX_NAME - 1:
            raise RestoreAsError("%s: suffix %r is not valid; allowed: %s, at most %d characters." % (
                field, value, SUFFIX_FORM, MAX_NAME - 1))
        out = {old: check_name(old + value, field, "the new name of VM %s (%s + suffix %s)" % (old, old, value))
               for old in names}
    else:
        if len(names) != 1:
            raise RestoreAsError("%s: %r is one name, but %d VMs are selected (%s); give a suffix (e.g. -copy) to "
                                 "restore several VMs as new ones, or select one VM." % (
                                     field, value, len(names), ", ".join(sorted(names))))
        out = {names[0]: check_name(value, field)}
    for old, new in sorted(out.items()):
        if new in out:
            raise RestoreAsError("%s: the new name of VM %s is %s, the name of a VM this restore selects; choose "
                                 "another name or suffix." % (field, old, new))
    return out


def new_path(path: str, old_name: str, new_name: str) -> str:
    """The copy's file next to PATH: the VM's name at the start of the file name replaced by the new name,
    or the new name and '_' put in front."""
    directory, base = os.path.split(os.path.normpath(path))
    if base.startswith(old_name) and (len(base) == len(old_name) or base[len(old_name)] in "._-"):
        new_base = new_name + base[len(old_name):]
    else:
        new_base = "%s_%s" % (new_name, base)
    if len(new_base) > MAX_BASENAME:
        raise RestoreAsError("the new file name %s... for %s is longer than %d characters; choose a shorter new "
                             "name." % (new_base[:40], path, MAX_BASENAME))
    return os.path.join(directory, new_base)


def path_map(paths: List[str], old_name: str, new_name: str, field: str = "kvmsnap_restore_as") -> Dict[str, str]:
    """{path: new path} for PATHS of VM OLD_NAME; refuses two files that would get one new path, and a new path
    that is one of the VM's own files."""
    out: Dict[str, str] = {}
    for path in paths:
        norm = os.path.normpath(path)
        if norm in out:
            continue
        out[norm] = new_path(norm, old_name, new_name)
    seen: Dict[str, str] = {}
    for src, dst in sorted(out.items()):
        if dst in out:
            raise RestoreAsError("%s: the new file of %s for VM %s would be %s, which is a file of the VM itself; "
                                 "choose another name." % (field, src, old_name, dst))
        if dst in seen:
            raise RestoreAsError("%s: %s and %s of VM %s would both be restored to %s; choose another name." % (
                field, seen[dst], src, old_name, dst))
        seen[dst] = src
    return out


def random_mac(rand: Optional[random.Random] = None) -> str:
    """A locally administered MAC in QEMU's range 52:54:00 (what libvirt generates)."""
    r = rand or random.SystemRandom()
    return "52:54:00:%02x:%02x:%02x" % (r.randrange(256), r.randrange(256), r.randrange(256))


def _shared_read_only(disk: ET.Element) -> bool:
    return disk.get("device") in ("cdrom", "floppy") or disk.find("readonly") is not None


def rewrite_xml(xml: str, new_name: str, new_uuid: str, disk_paths: Mapping[str, str],
                nvram_path: Optional[str] = None, mac: Optional[Callable[[], str]] = None) -> Dict[str, Any]:
    """The copy's domain XML from the (policy-checked) saved XML: {xml, name, uuid, macs, disks, nvram}.

    DISK_PATHS maps each writable disk's file (or device) to its new path; a writable disk without one is refused
    (the copy would write the original's disk). CD-ROMs, floppies and read-only disks stay shared. The NVRAM path
    becomes NVRAM_PATH (required when the XML has one)."""
    check_name(new_name, "as_new.name")
    try:
        new_uuid = str(_uuid.UUID(str(new_uuid)))
    except ValueError:
        raise RestoreAsError("as_new.uuid: %r is not a UUID." % (new_uuid,)) from None
    root = ET.fromstring(xml)
    old_name = root.findtext("name") or "?"
    mac = mac or random_mac
    wanted = {os.path.normpath(k): v for k, v in disk_paths.items()}
    problems: List[str] = []
    for tag, value in (("name", new_name), ("uuid", new_uuid)):
        el = root.find(tag)
        if el is None:
            el = ET.SubElement(root, tag)
        el.text = value
    genid = root.find("genid")
    if genid is not None:
        root.remove(genid)  # libvirt gives the copy its own VM generation ID
    for entry in root.findall("sysinfo/system/entry"):
        if entry.get("name") == "uuid":
            entry.text = new_uuid  # libvirt refuses a sysinfo UUID that differs from the domain's
    devices = root.find("devices")
    macs: List[str] = []
    disks: List[Dict[str, Any]] = []
    used = set()
    for idx, disk in enumerate(devices.findall("disk") if devices is not None else []):
        target = disk.find("target")
        where = "<disk %s>" % ((target.get("dev") if target is not None else None) or idx)
        src = disk.find("source")
        attr = "dev" if disk.get("type") == "block" else "file"
        path = src.get(attr) if src is not None else None
        if src is None or not path:
            continue
        norm = os.path.normpath(path)
        if norm in wanted:
            src.set(attr, wanted[norm])
            used.add(norm)
            disks.append({"target": target.get("dev") if target is not None else None, "source": path,
                          "path": wanted[norm]})
        elif not _shared_read_only(disk):
            problems.append("%s: %s has no new path; the copy would write the disk of VM %s" % (where, path, old_name))
    for path in sorted(set(wanted) - used):
        problems.append("as_new.disk_paths: %s is not a disk of VM %s" % (path, old_name))
    for iface in devices.findall("interface") if devices is not None else []:
        el = iface.find("mac")
        if el is None:
            el = ET.Element("mac")
            iface.insert(0, el)
        value = mac()
        el.set("address", value)
        macs.append(value)
    for graphics in devices.findall("graphics") if devices is not None else []:
        if graphics.get("port") not in (None, "-1") or graphics.get("autoport") == "no":
            for key in ("port", "tlsPort", "websocket"):
                graphics.attrib.pop(key, None)
            graphics.set("autoport", "yes")  # the original's fixed port would be taken
    for channel in devices.findall("channel") if devices is not None else []:
        src = channel.find("source")
        if channel.get("type") == "unix" and src is not None and src.get("path"):
            channel.remove(src)  # libvirt creates the copy's own socket
    nvram = root.find("os/nvram")
    nvram_out = None
    if nvram is not None:
        old = (nvram.text or "").strip()
        nv_src = nvram.find("source")
        if not old and nv_src is not None:
            old = nv_src.get("file") or ""
        if not nvram_path:
            problems.append("<os><nvram>: VM %s has the NVRAM file %s; the copy needs its own (as_new.nvram_path)" % (
                old_name, old or "?"))
        else:
            if nv_src is not None and nv_src.get("file"):
                nv_src.set("file", nvram_path)
            else:
                nvram.text = nvram_path
            nvram_out = {"source": old or None, "path": nvram_path}
    elif nvram_path:
        problems.append("as_new.nvram_path: VM %s has no NVRAM file" % old_name)
    if problems:
        raise RestoreAsError("refusing to restore VM %s as %s: %s. Nothing was changed." % (
            old_name, new_name, "; ".join(problems)))
    return {"xml": ET.tostring(root, encoding="unicode"), "name": new_name, "uuid": new_uuid, "macs": macs,
            "disks": disks, "nvram": nvram_out}
