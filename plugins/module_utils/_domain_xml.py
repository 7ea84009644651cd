# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Parse a libvirt domain XML (one parse per domain) into what discovery reports.

This module util is PRIVATE to the collection. It may change without notice.

``parse_domain_xml(xml_text) -> dict``: ``name``, ``uuid``, ``disks`` (each ``{type, device,
format, path, target, bus, readonly, shareable, source: {...}, backing_chain: [{type, format,
path}]}``; ``path`` is the file, the block device, or ``protocol:name`` of a network disk),
``nvram``, ``loader`` (``{path, type, readonly, firmware}``), ``agent`` (``{present,
connected}``; ``connected`` is read from the channel target's ``state`` attribute that only the
live XML of a running domain carries).

Every domain XML of the collection is parsed here, live ones from libvirt and saved ones read back from a
snapshot (untrusted input, docs/security.md) alike, with one set of rules (``parse_root``): a non-empty text
of at most ``MAX_XML_BYTES``, no DTD or entity declaration, well-formed, root ``<domain>``.
``check_saved(xml_text, expected_uuid, expected_name)`` adds the identity rules of a saved XML (a name, a
valid UUID, the target's UUID and name) and returns the record with the list of problems; the restore
(_domain_restore) and the manifest reader (_manifest) both use it. ``used_paths(root)`` lists every host
file or device a domain names (disks, backing and data stores, NVRAM).
"""

from __future__ import annotations

import os
import re
import uuid as _uuid
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Optional, Set, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError

AGENT_CHANNEL = "org.qemu.guest_agent.0"
MAX_XML_BYTES = 1024 * 1024
DTD_MESSAGE = "<!DOCTYPE>: a DTD or entity declaration is not allowed in a saved domain XML"
_DTD_RE = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


class DomainXmlError(KvmsnapError, ValueError):
    pass


def _source_of(disk_type: str, source: Optional[ET.Element]) -> Dict[str, Any]:
    if source is None:
        return {"path": None}
    if disk_type == "file":
        return {"path": source.get("file")}
    if disk_type == "block":
        return {"path": source.get("dev")}
    if disk_type == "dir":
        return {"path": source.get("dir")}
    if disk_type == "network":
        hosts = [{"name": h.get("name"), "port": h.get("port"), "transport": h.get("transport")}
                 for h in source.findall("host")]
        protocol = source.get("protocol")
        name = source.get("name")
        return {"path": "%s:%s" % (protocol, name) if protocol else name, "protocol": protocol, "name": name,
                "hosts": hosts}
    if disk_type == "volume":
        return {"path": None, "pool": source.get("pool"), "volume": source.get("volume")}
    if disk_type == "nvme":
        return {"path": None}
    return {"path": source.get("file") or source.get("dev")}


def _backing_chain(elem: ET.Element) -> List[Dict[str, Any]]:
    chain = []
    node = elem.find("backingStore")
    depth = 0
    while node is not None and depth < 64:
        btype = node.get("type")
        if btype is None:  # <backingStore/> ends the chain
            break
        fmt = node.find("format")
        src = _source_of(btype, node.find("source"))
        chain.append({"type": btype, "format": fmt.get("type") if fmt is not None else None, "path": src.get("path")})
        node = node.find("backingStore")
        depth += 1
    return chain


def untrusted_reason(xml_text: Any) -> Optional[str]:
    """Why XML_TEXT is refused before it is parsed at all (empty, too large, DTD or entities), or None."""
    if not isinstance(xml_text, str) or not xml_text.strip():
        return "domain XML is empty"
    if len(xml_text.encode("utf-8")) > MAX_XML_BYTES:
        return "domain XML is larger than %d bytes; refusing it" % MAX_XML_BYTES
    if _DTD_RE.search(xml_text):
        return DTD_MESSAGE
    return None


def parse_root(xml_text: Any) -> ET.Element:
    """The one parse of a domain XML: the rules of untrusted_reason, well-formed, root <domain>."""
    reason = untrusted_reason(xml_text)
    if reason is not None:
        raise DomainXmlError(reason)
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise DomainXmlError("domain XML is not parseable (it does not parse: %s)" % exc) from None
    if root.tag != "domain":
        raise DomainXmlError("domain XML has root <%s>: the root element must be <domain>" % root.tag)
    return root


def parse_domain_xml(xml_text: str) -> Dict[str, Any]:
    """The record of a domain XML (see the module doc); DomainXmlError when parse_root refuses it."""
    return domain_record(parse_root(xml_text))


def domain_record(root: ET.Element) -> Dict[str, Any]:
    """The record of a parsed <domain> element."""
    disks = []
    devices = root.find("devices")
    agent: Dict[str, bool] = {"present": False, "connected": False}
    if devices is not None:
        for disk in devices.findall("disk"):
            dtype = disk.get("type", "file")
            driver = disk.find("driver")
            target = disk.find("target")
            src = _source_of(dtype, disk.find("source"))
            disks.append({
                "type": dtype,
                "device": disk.get("device", "disk"),
                "format": driver.get("type") if driver is not None else None,
                "path": src.get("path"),
                "target": target.get("dev") if target is not None else None,
                "bus": target.get("bus") if target is not None else None,
                "readonly": disk.find("readonly") is not None,
                "shareable": disk.find("shareable") is not None,
                "source": src,
                "backing_chain": _backing_chain(disk),
            })
        for channel in devices.findall("channel"):
            target = channel.find("target")
            if target is not None and target.get("type") == "virtio" and target.get("name") == AGENT_CHANNEL:
                agent["present"] = True
                agent["connected"] = target.get("state") == "connected"
    os_elem = root.find("os")
    nvram: Optional[str] = None
    loader: Optional[Dict[str, Any]] = None
    if os_elem is not None:
        nv = os_elem.find("nvram")
        if nv is not None:
            nvram = (nv.text or "").strip() or None
            nv_src = nv.find("source")
            if nvram is None and nv_src is not None:
                nvram = nv_src.get("file") or nv_src.get("dev")
        ld = os_elem.find("loader")
        if ld is not None:
            loader = {"path": (ld.text or "").strip() or None, "type": ld.get("type"),
                      "readonly": ld.get("readonly") == "yes", "firmware": os_elem.get("firmware")}
        elif os_elem.get("firmware"):
            loader = {"path": None, "type": None, "readonly": None, "firmware": os_elem.get("firmware")}
    return {
        "name": root.findtext("name"),
        "uuid": root.findtext("uuid"),
        "type": root.get("type"),
        "disks": disks,
        "nvram": nvram,
        "loader": loader,
        "agent": agent,
    }


def identity_problems(record: Dict[str, Any], expected_uuid: Optional[str] = None,
                      expected_name: Optional[str] = None) -> List[str]:
    """What is wrong with the identity of a saved XML's RECORD (its ``uuid`` normalised in place)."""
    problems: List[str] = []
    name = (record.get("name") or "").strip()
    vm_uuid = (record.get("uuid") or "").strip()
    if not name:
        problems.append("it has no <name>")
    try:
        vm_uuid = str(_uuid.UUID(vm_uuid)) if vm_uuid else ""
    except ValueError:
        problems.append("its <uuid> %r is not a UUID" % vm_uuid)
        vm_uuid = ""
    if not vm_uuid:
        problems.append("it has no valid <uuid> (a restore must keep the VM's identity)")
    if expected_uuid and vm_uuid and vm_uuid.lower() != expected_uuid.lower():
        problems.append("its UUID %s differs from the target VM's UUID %s" % (vm_uuid, expected_uuid))
    if expected_name and name and name != expected_name:
        problems.append("its name %r differs from the target VM's name %r" % (name, expected_name))
    record["name"] = name
    record["uuid"] = vm_uuid
    return problems


def check_saved(xml_text: Any, expected_uuid: Optional[str] = None,
                expected_name: Optional[str] = None) -> Tuple[Dict[str, Any], List[str]]:
    """The one check of a saved (untrusted) domain XML's form and identity: (record, problems).

    Raises DomainXmlError when parse_root refuses the text; the problems are those of identity_problems.
    What the XML may contain is _domain_policy's allow-list, applied by the callers with the host's facts."""
    record = parse_domain_xml(xml_text)
    return record, identity_problems(record, expected_uuid, expected_name)


def used_paths(root: ET.Element) -> Set[str]:
    """Every host file or device a parsed domain names: disk sources, backing and data stores, the NVRAM."""
    used: Set[str] = set()
    for node in root.iter():
        if local_name(node.tag) in ("source", "dataStore"):
            for attr in ("file", "dev"):
                value = node.get(attr)
                if value:
                    used.add(os.path.normpath(value))
    nv = root.findtext("os/nvram")
    if nv and nv.strip():
        used.add(os.path.normpath(nv.strip()))
    return used


def local_name(tag: Any) -> str:
    """An element's tag without its namespace."""
    return tag.split("}", 1)[1] if isinstance(tag, str) and tag.startswith("{") else str(tag)
