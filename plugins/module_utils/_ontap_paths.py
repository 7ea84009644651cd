# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Paths inside an ONTAP volume for single-file / LUN restore: normalised and confined to the volume.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError

MAX_PATH = 4096


class PathError(KvmsnapError, ValueError):
    """A restore path is not acceptable; the message names the field, the entry index and the rule."""


def normalize_volume_path(path: Any, volume: str, field: str = "files", index: Optional[int] = None) -> str:
    """Return '/a/b' (relative to the volume root, '/'-prefixed) for PATH, or raise PathError.

    Accepted: 'a/b', '/a/b', './a//b', and '/vol/<volume>/a/b'. Refused: empty, NUL or control characters,
    '..' components, '.snapshot' components, the volume root itself, and '/vol/<other>/…' paths.
    """
    where = "%s[%d]" % (field, index) if index is not None else field
    if not isinstance(path, str) or not path.strip():
        raise PathError("%s: empty path; give a file path inside volume %s, e.g. images/vm1.qcow2." % (where, volume))
    if "\x00" in path:
        raise PathError("%s: path contains a NUL character." % where)
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise PathError("%s: path %r contains control characters." % (where, path))
    if len(path) > MAX_PATH:
        raise PathError("%s: path is %d characters long; at most %d allowed." % (where, len(path), MAX_PATH))
    text = path.strip() if path.strip() == path else path
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if text.startswith("/vol/"):
        if len(parts) < 2 or parts[1] != volume:
            raise PathError("%s: %r is outside volume %s; give a path inside that volume." % (where, path, volume))
        parts = parts[2:]
    for part in parts:
        if part == "..":
            raise PathError("%s: %r contains '..'; give a path inside volume %s without '..'." % (where, path, volume))
        if part.lower() == ".snapshot":
            raise PathError("%s: %r contains a '.snapshot' component; give the file's live path, the snapshot is "
                            "chosen with the snapshot option." % (where, path))
    if not parts:
        raise PathError("%s: %r is the volume root; give a file inside volume %s (use mode: volume to restore "
                        "the whole volume)." % (where, path, volume))
    return "/" + "/".join(parts)


def normalize_paths(paths: Any, volume: str, field: str = "files") -> List[str]:
    """Normalise a list of paths; duplicates (after normalisation) are refused with both indexes."""
    if not isinstance(paths, list) or not paths:
        raise PathError("%s: give at least one path inside volume %s." % (field, volume))
    out: List[str] = []
    for index, path in enumerate(paths):
        norm = normalize_volume_path(path, volume, field, index)
        if norm in out:
            raise PathError("%s[%d]: %r is the same file as %s[%d]." % (field, index, path, field, out.index(norm)))
        out.append(norm)
    return out


def lun_full_path(path: Any, volume: str, field: str = "luns", index: Optional[int] = None) -> str:
    """A LUN given as '/vol/<volume>/[qtree/]lun' or relative 'lun' → '/vol/<volume>/…'."""
    rel = normalize_volume_path(path, volume, field, index)
    return "/vol/%s%s" % (volume, rel)


def new_paths(mapping: Any, volume: str, in_place: List[str], field: str = "restore_paths") -> List[Tuple[str, str]]:
    """MAPPING {source: destination} (paths inside VOLUME) -> [(source, destination)], normalised. Refused: a
    destination equal to its source, to a file restored in place (IN_PLACE) or to another destination."""
    if mapping in (None, {}):
        return []
    if not isinstance(mapping, dict):
        raise PathError("%s: give a mapping of a path in the snapshot to a new path inside volume %s." % (field, volume))
    out: List[Tuple[str, str]] = []
    for src, dst in sorted(mapping.items(), key=lambda kv: str(kv[0])):
        where = "%s[%r]" % (field, src)
        source = normalize_volume_path(src, volume, where)
        dest = normalize_volume_path(dst, volume, where)
        if dest == source:
            raise PathError("%s: the destination %s is the source itself; use files to restore in place." % (
                where, dest))
        if dest in in_place:
            raise PathError("%s: the destination %s is also restored in place (files)." % (where, dest))
        if any(dest in (s, d) for s, d in out) or any(source == d for _s, d in out):
            raise PathError("%s: the destination %s is a source or a destination of another entry." % (where, dest))
        out.append((source, dest))
    return out
