# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The mount table: which mount holds a path, and for NFS its server address and export path.

This module util is PRIVATE to the collection. It may change without notice.

``read_mounts(root='/')`` reads ``<root>/proc/self/mountinfo`` (or, when absent,
``<root>/proc/mounts``), so tests feed real-format fixture trees. ``parse_mountinfo(text)`` /
``parse_proc_mounts(text)`` parse either format into ``Mount`` objects; ``find_mount(mounts,
path)`` returns the mount that holds an (already realpath'd) path: the longest mount point, and
the last one mounted when several share it. ``Mount.nfs_server`` / ``nfs_export`` /
``nfs_address`` (the ``addr=`` option, else the server when it is an address) describe an NFS
mount; ``export_path_of(mount, path)`` gives a file's path in the server's namespace
(export + bind-mount root + path below the mount point).
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
from typing import Dict, List, Optional

NFS_TYPES = ("nfs", "nfs4")
_OCTAL = re.compile(r"\\([0-7]{3})")


def unescape(field: str) -> str:
    """Undo the kernel's octal escapes (\\040 space, \\011 tab, \\012 newline, \\134 backslash)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def _options(text: str) -> Dict[str, Optional[str]]:
    out: Dict[str, Optional[str]] = {}
    for item in text.split(","):
        if not item:
            continue
        if "=" in item:
            key, value = item.split("=", 1)
            out[key] = value
        else:
            out[item] = None
    return out


class Mount:
    """One mounted file system."""

    __slots__ = ("mount_id", "parent_id", "device", "root", "mount_point", "fstype", "source", "options")

    def __init__(self, mount_point: str, fstype: str, source: str, options: Dict[str, Optional[str]],
                 root: str = "/", device: Optional[str] = None, mount_id: Optional[int] = None,
                 parent_id: Optional[int] = None) -> None:
        self.mount_point = mount_point
        self.fstype = fstype
        self.source = source
        self.options = options
        self.root = root
        self.device = device
        self.mount_id = mount_id
        self.parent_id = parent_id

    def __repr__(self) -> str:
        return "Mount(%r on %r type %r root %r)" % (self.source, self.mount_point, self.fstype, self.root)

    @property
    def is_nfs(self) -> bool:
        return self.fstype in NFS_TYPES or self.fstype.startswith("nfs")

    def _split_source(self):
        src = self.source
        if src.startswith("["):
            close = src.find("]")
            if close > 0 and src[close + 1:close + 2] == ":":
                return src[1:close], src[close + 2:]
        if ":" in src:
            server, export = src.split(":", 1)
            return server, export
        return None, None

    @property
    def nfs_server(self) -> Optional[str]:
        return self._split_source()[0] if self.is_nfs else None

    @property
    def nfs_export(self) -> Optional[str]:
        if not self.is_nfs:
            return None
        export = self._split_source()[1]
        if export is None:
            return None
        return export if export.startswith("/") else "/" + export

    @property
    def nfs_address(self) -> Optional[str]:
        """The server's IP address: the addr= option, else the server field when it is an address."""
        if not self.is_nfs:
            return None
        addr = self.options.get("addr")
        if addr:
            return addr
        server = self.nfs_server
        if server:
            try:
                ipaddress.ip_address(server.split("%")[0])
                return server
            except ValueError:
                return None
        return None


def parse_mountinfo(text: str) -> List[Mount]:
    """Parse /proc/self/mountinfo (proc(5)): id parent maj:min root mount-point opts [optional...] - type src super."""
    mounts = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue  # not a mountinfo line
        if len(fields) < sep + 3:
            continue
        options = _options(fields[5])
        options.update(_options(fields[sep + 3] if len(fields) > sep + 3 else ""))
        mount_id: Optional[int] = None
        parent_id: Optional[int] = None
        try:
            mount_id, parent_id = int(fields[0]), int(fields[1])
        except ValueError:
            pass
        mounts.append(Mount(mount_point=unescape(fields[4]), fstype=fields[sep + 1], source=unescape(fields[sep + 2]),
                            options=options, root=unescape(fields[3]), device=fields[2], mount_id=mount_id,
                            parent_id=parent_id))
    return mounts


def parse_proc_mounts(text: str) -> List[Mount]:
    """Parse /proc/mounts (fstab format): source mount-point type options dump pass."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or line.lstrip().startswith("#"):
            continue
        mounts.append(Mount(mount_point=unescape(fields[1]), fstype=fields[2], source=unescape(fields[0]),
                            options=_options(fields[3])))
    return mounts


def read_mounts(root: str = "/") -> List[Mount]:
    """The mount table of the host under root ('/' normally; a fixture tree in tests)."""
    for rel, parser in (("proc/self/mountinfo", parse_mountinfo), ("proc/mounts", parse_proc_mounts)):
        path = os.path.join(root, rel)
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as fh:
                return parser(fh.read())
        except FileNotFoundError:
            continue
    raise OSError("no mount table under %s (proc/self/mountinfo or proc/mounts)" % root)


def _is_under(path: str, mount_point: str) -> bool:
    if mount_point == "/":
        return path.startswith("/")
    return path == mount_point or path.startswith(mount_point.rstrip("/") + "/")


def find_mount(mounts: List[Mount], path: str) -> Optional[Mount]:
    """The mount holding path (absolute, realpath'd): longest mount point; the later one on ties."""
    best: Optional[Mount] = None
    for mount in mounts:
        if _is_under(path, mount.mount_point):
            if best is None or len(mount.mount_point.rstrip("/")) >= len(best.mount_point.rstrip("/")):
                best = mount
    return best


def relative_to_mount(mount: Mount, path: str) -> str:
    """path below the mount point, '/'-prefixed ('/' for the mount point itself)."""
    if mount.mount_point == "/":
        return path
    rest = path[len(mount.mount_point.rstrip("/")):]
    return rest if rest.startswith("/") else "/" + rest


def export_path_of(mount: Mount, path: str) -> Optional[str]:
    """A file's path in the NFS server's namespace: export + bind root + path below the mount point."""
    export = mount.nfs_export
    if export is None:
        return None
    full = export
    if mount.root and mount.root != "/":
        full = posixpath.join(full, mount.root.lstrip("/"))
    rel = relative_to_mount(mount, path)
    if rel != "/":
        full = posixpath.join(full, rel.lstrip("/"))
    return posixpath.normpath(full) if full != "/" else "/"
