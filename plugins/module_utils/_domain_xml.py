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
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError

AGENT_CHANNEL = "org.qemu.guest_agent.0"


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


def parse_domain_xml(xml_text: str) -> Dict[str, Any]:
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise DomainXmlError("domain XML does not parse: %s" % exc) from None
    if root.tag != "domain":
        raise DomainXmlError("not a domain XML (root element %r)" % root.tag)
    disks = []
    devices = root.find("devices")
    agent = {"present": False, "connected": False}
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
    nvram = None
    loader = None
    if os_elem is not None:
        nv = os_elem.find("nvram")
        if nv is not None:
            nvram = (nv.text or "").strip() or None
            if nvram is None:
                src = nv.find("source")
                if src is not None:
                    nvram = src.get("file") or src.get("dev")
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
