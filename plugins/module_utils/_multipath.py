# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""SAN disks: block device → device-mapper multipath WWID → ONTAP LUN serial number.

This module util is PRIVATE to the collection. It may change without notice.

WWID = ``3`` (NAA designator) + ``600a0980`` (NetApp OUI, clustered ONTAP) + hex of the 12-character
serial, e.g. serial ``D31sh#DQGQUu`` ↔ ``3600a0980443331736823445147515575``; older 7-Mode LUNs
use ``360a98000``. ``serial_to_wwid(serial)`` / ``wwid_to_serial(wwid)`` convert (the latter
accepts ``3…``, ``naa.6…``, ``mpath-3…``, ``scsi-3…``, ``dm-uuid-mpath-3…``; raises ValueError for a
non-NetApp or malformed id). ``resolve_block_device(dev, root='/')`` follows
``/dev/mapper/*``, ``/dev/disk/by-*/*`` and ``/dev/dm-N`` symlinks inside root, reads
``<root>/sys/block/<dev>/dm/uuid`` (``mpath-3…``; ``part1-mpath-3…`` for a kpartx partition;
``LVM-…`` for a logical volume, whose ``slaves/`` lead to the multipath device) or, for a plain
SCSI disk, ``<root>/sys/block/sdX/device/wwid`` (``naa.600a0980…``), and returns
``{device, dm, wwid, serial, partition, lvm, layers}``.
"""

from __future__ import annotations

import binascii
import os
import posixpath
from typing import Any, Dict, List, Optional

NETAPP_PREFIXES = ("600a0980", "60a98000")  # clustered ONTAP, 7-Mode
DEFAULT_PREFIX = "3600a0980"


def serial_to_wwid(serial: str, prefix: str = DEFAULT_PREFIX) -> str:
    """'D31sh#DQGQUu' -> '3600a0980443331736823445147515575'."""
    if not isinstance(serial, str) or len(serial) != 12:
        raise ValueError("an ONTAP LUN serial number has 12 characters, got %r" % (serial,))
    try:
        raw = serial.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("an ONTAP LUN serial number is ASCII, got %r" % (serial,)) from None
    return prefix + binascii.hexlify(raw).decode()


def normalize_wwid(wwid: str) -> str:
    """Strip the forms udev/multipath/VMware wrap a WWID in; returns lower-case '3…' form."""
    text = (wwid or "").strip().lower()
    for head in ("dm-uuid-mpath-", "mpath-", "scsi-", "wwn-0x"):
        if text.startswith(head):
            text = text[len(head):]
    if text.startswith("naa."):
        text = "3" + text[4:]
    elif text.startswith("6") and len(text) == 32:
        text = "3" + text
    return text


def wwid_to_serial(wwid: str) -> str:
    """'3600a0980443331736823445147515575' -> 'D31sh#DQGQUu' (ValueError if not an ONTAP LUN)."""
    text = normalize_wwid(wwid)
    if not text.startswith("3"):
        raise ValueError("%r is not an NAA-6 WWID (expected 3600a0980…)" % (wwid,))
    naa = text[1:]
    for prefix in NETAPP_PREFIXES:
        if naa.startswith(prefix):
            body = naa[len(prefix):]
            break
    else:
        raise ValueError("%r is not a NetApp ONTAP LUN (vendor prefix %s, expected 600a0980 or 60a98000)"
                         % (wwid, naa[:8]))
    if len(body) != 24:
        raise ValueError("%r: expected 24 hex digits after the NetApp prefix, got %d" % (wwid, len(body)))
    try:
        serial = binascii.unhexlify(body).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("%r: the serial part is not hex-encoded ASCII" % (wwid,)) from None
    if not serial.isprintable():
        raise ValueError("%r: the serial part decodes to unprintable characters" % (wwid,))
    return serial


def is_netapp_wwid(wwid: str) -> bool:
    try:
        wwid_to_serial(wwid)
    except ValueError:
        return False
    return True


def _in_root(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/")) if root not in ("", "/") else path


def resolve_in_root(root: str, path: str, depth: int = 0) -> str:
    """Resolve symlinks of an absolute path as seen from root (fixture trees use relative links)."""
    if root in ("", "/"):
        return os.path.realpath(path)
    if depth > 40:
        raise OSError("too many symbolic links resolving %s under %s" % (path, root))
    parts = [p for p in path.split("/") if p]
    cur = "/"
    for i, part in enumerate(parts):
        if part == "..":
            cur = posixpath.dirname(cur) or "/"
            continue
        candidate = posixpath.join(cur, part)
        real = _in_root(root, candidate)
        if os.path.islink(real):
            target = os.readlink(real)
            nxt = target if target.startswith("/") else posixpath.normpath(posixpath.join(cur, target))
            rest = "/".join(parts[i + 1:])
            return resolve_in_root(root, nxt + ("/" + rest if rest else ""), depth + 1)
        cur = candidate
    return cur


def _read(root: str, path: str) -> Optional[str]:
    try:
        with open(_in_root(root, path)) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _listdir(root: str, path: str) -> List[str]:
    try:
        return sorted(os.listdir(_in_root(root, path)))
    except OSError:
        return []


def _sys_name(root: str, dev: str) -> Optional[str]:
    """/dev/... (after symlinks) → the kernel name under /sys/block (dm-3, sdb, sdb1→sdb1)."""
    real = resolve_in_root(root, dev)
    name = posixpath.basename(real)
    if os.path.isdir(_in_root(root, "/sys/block/" + name)) or os.path.exists(_in_root(root, "/sys/class/block/" + name)):
        return name
    return None


def _dm_info(root: str, name: str, layers: List[str], depth: int = 0) -> Dict[str, Any]:
    uuid = _read(root, "/sys/block/%s/dm/uuid" % name) or ""
    info: Dict[str, Any] = {"dm": name, "wwid": None, "partition": None, "lvm": False}
    layers.append("%s(%s)" % (name, uuid or "no dm uuid"))
    if uuid.startswith("mpath-"):
        info["wwid"] = uuid[len("mpath-"):]
        return info
    if uuid.startswith("part") and "-mpath-" in uuid:
        head, wwid = uuid.split("-mpath-", 1)
        info["wwid"] = wwid
        digits = head[len("part"):]
        info["partition"] = int(digits) if digits.isdigit() else None
        return info
    if depth < 8:
        slaves = _listdir(root, "/sys/block/%s/slaves" % name)
        for slave in slaves:
            if slave.startswith("dm-"):
                sub = _dm_info(root, slave, layers, depth + 1)
            else:
                sub = _scsi_info(root, slave, layers)
            if sub.get("wwid"):
                sub["lvm"] = sub.get("lvm") or uuid.startswith("LVM-")
                sub["slaves"] = len(slaves)
                return sub
    info["lvm"] = uuid.startswith("LVM-")
    return info


def _scsi_info(root: str, name: str, layers: List[str]) -> Dict[str, Any]:
    base = name
    partition = None
    if not os.path.isdir(_in_root(root, "/sys/block/%s" % name)):
        # a partition (sdb1): its disk is the parent directory in /sys/class/block
        real = resolve_in_root(root, "/sys/class/block/%s" % name)
        parent = posixpath.basename(posixpath.dirname(real))
        digits = name[len(parent):].lstrip("p")
        partition = int(digits) if digits.isdigit() else None
        base = parent
    wwid = _read(root, "/sys/block/%s/device/wwid" % base)
    layers.append("%s(%s)" % (name, wwid or "no wwid"))
    return {"dm": None, "wwid": normalize_wwid(wwid) if wwid else None, "partition": partition, "lvm": False}


def resolve_block_device(dev: str, root: str = "/") -> Dict[str, Any]:
    """Describe the SAN identity of a block device (see the module doc)."""
    name = _sys_name(root, dev)
    layers: List[str] = []
    if name is None:
        return {"device": dev, "dm": None, "wwid": None, "serial": None, "partition": None, "lvm": False,
                "layers": layers, "error": "%s is not a block device known to sysfs" % dev}
    if name.startswith("dm-"):
        info = _dm_info(root, name, layers)
    else:
        info = _scsi_info(root, name, layers)
    wwid = normalize_wwid(info["wwid"]) if info.get("wwid") else None
    serial = None
    error = None
    if wwid:
        try:
            serial = wwid_to_serial(wwid)
        except ValueError as exc:
            error = str(exc)
    else:
        error = "%s has no multipath/SCSI WWID (layers: %s)" % (dev, " -> ".join(layers) or name)
    return {"device": dev, "dm": info.get("dm"), "wwid": wwid, "serial": serial,
            "partition": info.get("partition"), "lvm": bool(info.get("lvm")), "layers": layers, "error": error}
