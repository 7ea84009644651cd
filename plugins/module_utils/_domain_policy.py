# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one allow-list policy for a domain XML that comes from a backup (untrusted input).

This module util is PRIVATE to the collection. It may change without notice.

A saved XML is read back from a snapshot that anyone with write access to the datastore may have edited
(docs/security.md). libvirtd runs QEMU (and whatever the XML names) with root's reach, so the XML is checked
against what is *allowed*, not against a list of known bad things:

- the emulator is the host's own (from ``virConnect.getCapabilities()``), else it is replaced by it;
- character devices (serial, console, parallel, channel) only of safe types (pty, null, vc, spicevmc,
  spiceport, qemu-vdagent, and the guest agent's unix channel in libvirt's channel dir); other types
  (file, pipe, unix with a path elsewhere, dev, tcp, udp, stdio, ...) are rewritten to pty;
- device kinds outside the allow-list (hostdev, filesystem, smartcard, redirdev, shmem, memory, lease, ...)
  and elements of other namespaces (``qemu:commandline``, ``qemu:capabilities``, ``qemu:override``) are refused;
- disks only of type file/block, every path they name inside the allowed paths (network disks refused);
- loader/nvram/kernel/initrd/dtb paths inside the allowed paths, the host's firmware dirs (domain capabilities)
  or the NVRAM dir; binaries or sockets named by ``<driver>``/``<backend>``/``<script>``/``<binary>`` refused.

``check(xml, allowed_paths, host)`` returns ``{xml, rewritten, refused}``; every entry names the element or
attribute and the reason; a domain XML that does not parse raises ``PolicyError``. Callers: the manifest
reader (backup_manifest, restore pre-flight) and vm_restore (before define).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils import _domain_xml
from ansible_collections.kvmsnap.core.plugins.module_utils._domain_xml import AGENT_CHANNEL, local_name
from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError

CHANNEL_DIR = "/var/lib/libvirt/qemu/channel"
NVRAM_DIR = "/var/lib/libvirt/qemu/nvram"
# firmware shipped by the distribution (root-owned); domain capabilities add what the host's QEMU reports
FIRMWARE_DIRS = ("/usr/share/OVMF", "/usr/share/edk2", "/usr/share/qemu", "/usr/share/AAVMF", "/usr/share/seabios",
                 "/usr/lib/ipxe", "/boot")
SAFE_CHR_TYPES = ("pty", "null", "vc", "spicevmc", "spiceport", "qemu-vdagent")
CHR_DEVICES = ("serial", "console", "parallel", "channel")
# device kinds that reach no host resource beyond what libvirt manages itself (checked further below)
ALLOWED_DEVICES = ("emulator", "disk", "controller", "interface", "input", "graphics", "video", "sound", "audio",
                   "memballoon", "rng", "watchdog", "panic", "tpm", "vsock", "iommu", "hub", "serial", "console",
                   "parallel", "channel", "pstore")
REFUSED_WHY = {
    "hostdev": "host device passthrough",
    "filesystem": "host directory passthrough",
    "smartcard": "host smartcard/NSS database access",
    "redirdev": "USB redirection from a host socket or device",
    "shmem": "host shared memory",
    "memory": "host memory backend files",
    "lease": "host lock-space files",
    "nvram": "host NVRAM device",
    "crypto": "host crypto backend",
}
INTERFACE_TYPES = ("network", "bridge", "direct", "user", "ethernet")
GRAPHICS_TYPES = ("vnc", "spice")
INPUT_TYPES = ("mouse", "tablet", "keyboard")
RNG_SOURCES = ("/dev/urandom", "/dev/random", "/dev/hwrng")
PATH_ATTRS = ("file", "dev", "dir", "path", "socket")


class PolicyError(KvmsnapError, ValueError):
    """The XML was refused; the message lists every refused element with the reason."""


def host_facts(conn: Any) -> Dict[str, Any]:
    """What the policy needs from the KVM host: its emulators (per arch) and firmware dirs."""
    emulators: Dict[str, str] = {}
    firmware: List[str] = list(FIRMWARE_DIRS)
    try:
        caps = ET.fromstring(conn.getCapabilities())
        for guest in caps.findall("guest"):
            arch_el = guest.find("arch")
            arch_name = arch_el.get("name") if arch_el is not None else None
            if arch_el is None or not arch_name:
                continue
            emu = (arch_el.findtext("emulator") or "").strip()
            if emu and arch_name not in emulators:
                emulators[arch_name] = emu
            for dom in arch_el.findall("domain"):
                demu = (dom.findtext("emulator") or "").strip()
                if demu and arch_name not in emulators:
                    emulators[arch_name] = demu
        host_arch = (caps.findtext("host/cpu/arch") or "").strip()
    except Exception:
        host_arch = ""
    for arch, emu in list(emulators.items()):
        try:
            dcaps = ET.fromstring(conn.getDomainCapabilities(emu, arch, None, None, 0))
        except Exception:
            continue
        for value in dcaps.findall("./os/loader/value"):
            path = (value.text or "").strip()
            if path.startswith("/") and os.path.dirname(path) not in firmware:
                firmware.append(os.path.dirname(path))
    return {"emulators": emulators, "host_arch": host_arch, "firmware_dirs": firmware,
            "channel_dir": CHANNEL_DIR, "nvram_dir": NVRAM_DIR}


def path_under(path: Optional[str], roots: List[str]) -> Optional[str]:
    """The root PATH resolves under, or None. Refuses relative paths, '..' and symlinked components."""
    if not path or not os.path.isabs(path) or ".." in path.split("/"):
        return None
    norm = os.path.normpath(path)
    real = os.path.realpath(norm)
    if real != norm:  # a symlink somewhere in the path: the lexical check would lie
        return None
    for root in roots:
        rnorm = os.path.realpath(os.path.normpath(root))
        if real == rnorm or real.startswith(rnorm.rstrip("/") + "/"):
            return rnorm
    return None


def _ns(tag: Any) -> Optional[str]:
    return tag[1:].split("}", 1)[0] if isinstance(tag, str) and tag.startswith("{") else None


def _prefix(ns: Optional[str]) -> str:
    """'qemu' for libvirt's http://libvirt.org/schemas/domain/qemu/1.0, else the namespace itself."""
    parts = (ns or "").rstrip("/").split("/")
    return parts[-2] if ns and ns.startswith("http://libvirt.org/schemas/domain/") and len(parts) > 1 else str(ns)


class _Checker:
    def __init__(self, allowed: List[str], host: Dict[str, Any]) -> None:
        self.allowed = list(allowed)
        self.host = host
        self.refused: List[str] = []
        self.rewritten: List[str] = []

    def refuse(self, where: str, why: str) -> None:
        self.refused.append("%s: %s" % (where, why))

    def path_in(self, where: str, path: Optional[str], extra: List[str], what: str) -> None:
        if path_under(path, self.allowed + extra) is None:
            self.refuse(where, "%s %s is outside allowed_paths (%s)%s, or has '..' or a symlink" % (
                what, path, ", ".join(self.allowed) or "none given",
                " and the host's dirs %s" % ", ".join(extra) if extra else ""))


def _desc(el: ET.Element, idx: int) -> str:
    target = el.find("target")
    name = None
    if target is not None:
        name = target.get("dev") or target.get("name") or target.get("port")
    return "<%s%s>" % (local_name(el.tag), (" " + name) if name else "[%d]" % idx)


def _check_disk(c: _Checker, disk: ET.Element, idx: int) -> None:
    target = disk.find("target")
    where = "<disk %s>" % ((target.get("dev") if target is not None else None) or idx)
    dtype = disk.get("type") or "file"
    if dtype not in ("file", "block"):
        src = disk.find("source")
        what = "a network disk (%s)" % (src.get("protocol") if src is not None else "?") if dtype == "network" \
            else "not a local file or device"
        c.refuse(where, "type=%r is %s; only file and block disks on the datastores are allowed" % (dtype, what))
        return
    for el in disk.iter():
        loc = local_name(el.tag)
        if loc in ("reservations", "mirror"):
            c.refuse(where, "<%s> is not allowed (it names host sockets or copy targets)" % loc)
            continue
        if loc == "backingStore" and el.get("type") not in (None, "file", "block"):
            c.refuse(where, "backing store type=%r is not allowed" % el.get("type"))
        if loc == "source" and el.get("protocol"):
            c.refuse(where, "source protocol=%r is not allowed" % el.get("protocol"))
        for attr in PATH_ATTRS:
            if loc in ("source", "dataStore") and el.get(attr):
                c.path_in(where + " <%s %s>" % (loc, attr), el.get(attr), [], "path")


def _check_chr(c: _Checker, el: ET.Element, idx: int, root: ET.Element) -> None:
    """Safe types stay; the agent's unix channel in libvirt's channel dir stays; everything else becomes a pty."""
    kind = local_name(el.tag)
    ctype = el.get("type") or "pty"
    target = el.find("target")
    where = _desc(el, idx)
    if kind == "channel" and target is not None and target.get("type") == "guestfwd":
        c.refuse(where, "guestfwd channels forward guest traffic to host addresses")
        return
    safe = ctype in SAFE_CHR_TYPES
    if el.find("log") is not None:
        safe = False  # <log file=...>: QEMU writes (and truncates) that host file
    elif ctype == "unix" and kind == "channel" and target is not None and target.get("name") == AGENT_CHANNEL:
        src = el.find("source")
        path = src.get("path") if src is not None else None
        if src is None or path is None or path_under(path, [c.host.get("channel_dir") or CHANNEL_DIR]) is not None:
            return
        # the agent keeps working on a socket libvirt creates in its own channel dir
        el.remove(src)
        c.rewritten.append("%s: path=%s removed (libvirt puts the guest agent socket in %s)" % (
            where, path, c.host.get("channel_dir") or CHANNEL_DIR))
        return
    if safe:
        return
    src = el.find("source")
    detail = ""
    if src is not None:
        detail = " " + " ".join("%s=%s" % (k, v) for k, v in sorted(src.attrib.items()))
    for child in list(el):
        if local_name(child.tag) not in ("target", "address", "alias"):
            el.remove(child)
    for attr in list(el.attrib):
        if attr != "type":
            del el.attrib[attr]
    el.set("type", "pty")
    c.rewritten.append("%s: type=%r%s rewritten to type='pty' (host files, sockets and devices are not allowed)"
                       % (where, ctype, detail))


def _check_os(c: _Checker, os_el: ET.Element) -> None:
    fw = list(c.host.get("firmware_dirs") or FIRMWARE_DIRS)
    for tag in ("loader", "kernel", "initrd", "dtb"):
        node = os_el.find(tag)
        if node is not None and (node.text or "").strip():
            c.path_in("<os><%s>" % tag, (node.text or "").strip(), fw, "path")
    nv = os_el.find("nvram")
    if nv is not None:
        if (nv.text or "").strip():
            c.path_in("<os><nvram>", (nv.text or "").strip(), [c.host.get("nvram_dir") or NVRAM_DIR], "path")
        if nv.get("template"):
            c.path_in("<os><nvram template>", nv.get("template"), fw, "template")
        src = nv.find("source")
        if src is not None:
            if nv.get("type") not in (None, "file"):
                c.refuse("<os><nvram>", "type=%r is not allowed" % nv.get("type"))
            elif src.get("file"):
                c.path_in("<os><nvram><source file>", src.get("file"), [c.host.get("nvram_dir") or NVRAM_DIR],
                          "path")
    for table in os_el.findall("acpi/table"):
        c.path_in("<os><acpi><table>", (table.text or "").strip(), fw, "path")


def _check_emulator(c: _Checker, devices: ET.Element, root: ET.Element) -> None:
    node = devices.find("emulator")
    emulators = c.host.get("emulators") or {}
    if node is None or not emulators:
        return  # libvirt picks the host's own emulator
    arch = None
    type_el = root.find("os/type")
    if type_el is not None:
        arch = type_el.get("arch")
    arch = arch or c.host.get("host_arch") or ""
    own = emulators.get(arch)
    given = (node.text or "").strip()
    if own is None:
        c.refuse("<emulator>", "%s is not the host's emulator, and the host has none for arch %r" % (given, arch))
    elif given != own:
        node.text = own
        c.rewritten.append("<emulator>: %s is not the host's emulator; replaced by %s" % (given, own))


def _check_device(c: _Checker, el: ET.Element, idx: int, root: ET.Element) -> None:
    kind = local_name(el.tag)
    where = _desc(el, idx)
    if _ns(el.tag):
        c.refuse("<%s:%s>" % (_prefix(_ns(el.tag)), kind), "elements of other namespaces are not allowed")
        return
    if kind == "redirdev" and el.get("type") == "spicevmc" and el.find("source") is None:
        return  # USB redirection from the SPICE client (virt-install's default), no host resource
    if kind not in ALLOWED_DEVICES:
        c.refuse(where, "%s; not on the allow-list of devices" % REFUSED_WHY.get(kind, "unknown device kind"))
        return
    if kind == "disk":
        _check_disk(c, el, idx)
    elif kind in CHR_DEVICES:
        _check_chr(c, el, idx, root)
    elif kind == "interface":
        itype = el.get("type") or "network"
        if itype not in INTERFACE_TYPES:
            c.refuse(where, "type=%r is not allowed (allowed: %s)" % (itype, ", ".join(INTERFACE_TYPES)))
        for sub, why in (("script", "runs a host script"), ("downscript", "runs a host script")):
            if el.find(sub) is not None:
                c.refuse(where + " <%s>" % sub, why)
        backend = el.find("backend")
        bad = sorted(a for a in (backend.attrib if backend is not None else {}) if a != "type")
        if bad:
            c.refuse(where + " <backend>", "%s override host devices/files" % ", ".join(bad))
        drv = el.find("driver")
        if drv is not None and drv.get("name") not in (None, "qemu", "vhost", "kvm"):
            c.refuse(where + " <driver name>", "%r is not allowed" % drv.get("name"))
        source = el.find("source")
        if source is not None and source.get("path"):
            c.refuse(where + " <source path>", "host sockets are not allowed")
    elif kind == "graphics":
        gtype = el.get("type")
        if gtype not in GRAPHICS_TYPES:
            c.refuse(where, "type=%r is not allowed (allowed: %s)" % (gtype, ", ".join(GRAPHICS_TYPES)))
        if el.get("socket") or any(lst.get("type") == "socket" or lst.get("socket") for lst in el.findall("listen")):
            c.refuse(where, "a listen socket path on the host is not allowed")
        if any(gl.get("rendernode") for gl in el.findall("gl")):
            c.refuse(where + " <gl rendernode>", "host render devices are not allowed")
    elif kind == "input":
        if el.get("type") not in INPUT_TYPES:
            c.refuse(where, "type=%r reads a host device; allowed: %s" % (el.get("type"), ", ".join(INPUT_TYPES)))
    elif kind == "rng":
        backend = el.find("backend")
        model = backend.get("model") if backend is not None else None
        text = ((backend.text if backend is not None else None) or "").strip()
        if model == "random" and text not in ("",) + RNG_SOURCES:
            c.refuse(where + " <backend>", "%s is not a host random source" % text)
        elif model not in (None, "random", "builtin"):
            c.refuse(where + " <backend>", "model=%r is not allowed" % model)
    elif kind == "tpm":
        backend = el.find("backend")
        if backend is not None and backend.get("type") not in (None, "emulator"):
            c.refuse(where + " <backend>", "type=%r (host TPM passthrough) is not allowed" % backend.get("type"))
    elif kind == "audio":
        if el.get("type") not in (None, "none", "spice"):
            c.refuse(where, "type=%r reaches host audio or files" % el.get("type"))
    elif kind == "video":
        drv = el.find("driver")
        if drv is not None and drv.get("name") == "vhostuser":
            c.refuse(where + " <driver name>", "vhost-user runs a host binary")
    for node in el.iter():
        if local_name(node.tag) == "binary":
            c.refuse(where + " <binary>", "names a host binary")


def check(xml_text: str, allowed_paths: List[str], host: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Apply the policy; {'xml': text to define, 'rewritten': [...], 'refused': [...]}.

    A text _domain_xml refuses before parsing (too large, DTD or entities) is one refusal; one that does not parse
    or is no <domain> raises PolicyError."""
    reason = _domain_xml.untrusted_reason(xml_text)
    if reason is not None and isinstance(xml_text, str) and xml_text.strip():
        return {"xml": xml_text, "rewritten": [], "refused": [reason]}
    try:
        root = _domain_xml.parse_root(xml_text)
    except _domain_xml.DomainXmlError as exc:
        raise PolicyError(str(exc)) from None
    c = _Checker(allowed_paths, host or {})
    for child in list(root):
        if _ns(child.tag):
            c.refuse("<%s:%s>" % (_prefix(_ns(child.tag)), local_name(child.tag)),
                     "elements of other namespaces (e.g. qemu:commandline) pass arguments to QEMU; not allowed")
    for sec in root.findall("seclabel"):
        # 'none' of the 'none' model is what libvirt writes on a host without a security driver
        if sec.get("type") == "static" or (sec.get("type") == "none" and sec.get("model") != "none"):
            c.refuse("<seclabel type=%s>" % sec.get("type"), "lifting or fixing the host's confinement is not allowed")
    os_el = root.find("os")
    if os_el is not None:
        _check_os(c, os_el)
    devices = root.find("devices")
    if devices is not None:
        _check_emulator(c, devices, root)
        for idx, el in enumerate(list(devices)):
            _check_device(c, el, idx, root)
    out = xml_text
    if c.rewritten:
        out = ET.tostring(root, encoding="unicode")
    return {"xml": out, "rewritten": c.rewritten, "refused": c.refused}


def disk_index(conn: Any) -> Dict[str, List[Dict[str, str]]]:
    """path → [{uuid, name}] of every domain of the host (active or not) whose XML uses it (disks, backing
    files, data stores, NVRAM). One pass over `virsh list --all`."""
    index: Dict[str, List[Dict[str, str]]] = {}
    for dom in conn.listAllDomains(0):
        try:
            used = _domain_xml.used_paths(_domain_xml.parse_root(dom.XMLDesc(0)))
            who = {"uuid": dom.UUIDString().lower(), "name": dom.name()}
        except Exception:
            continue
        for path in used:
            index.setdefault(path, []).append(who)
    return index


def users_in(index: Dict[str, List[Dict[str, str]]], paths: List[str],
             exclude_uuid: Optional[str]) -> Dict[str, List[str]]:
    """path → names of the domains other than EXCLUDE_UUID that use it, for the PATHS in use."""
    out: Dict[str, List[str]] = {}
    for path in paths:
        if not path:
            continue
        names = [w["name"] for w in index.get(os.path.normpath(path), [])
                 if not exclude_uuid or w["uuid"] != exclude_uuid.lower()]
        if names:
            out[path] = sorted(names)
    return out


def disk_users(conn: Any, paths: List[str], exclude_uuid: Optional[str]) -> Dict[str, List[str]]:
    """path → names of the other domains (active or not) whose XML uses it."""
    return users_in(disk_index(conn), paths, exclude_uuid)
