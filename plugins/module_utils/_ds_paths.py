# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one mapping from a datastore path to the path inside its ONTAP volume (the junction offset).

This module util is PRIVATE to the collection. It may change without notice.

A datastore is a host directory on one ONTAP volume, but not always the volume's root: an NFS datastore may be
mounted from ``svm:/vol_junction/sub/dir`` (offset ``/sub/dir``), or a datastore configured as a subdirectory of
the volume (kvmsnap_datastores ``path_in_volume: /images``). Manifests keep each disk's ``path`` relative to its
datastore; whatever talks to ONTAP (single-file restore, volume listings) needs the path inside the volume, and
whatever reads a snapshot through the host needs the snapshot's copy of the datastore directory. Backup
(manifest), restore (ontap_restore file paths) and verification (_verify) all take them from here.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any, Mapping, Optional

SNAPDIR = ".snapshot"
ROOT = "/"


def clean(path: Optional[str]) -> str:
    """'/'-prefixed, normalized; '' and None are the root."""
    return posixpath.normpath("/" + str(path or "").lstrip("/"))


def offset(datastore: Optional[Mapping[str, Any]]) -> str:
    """Where a datastore record's directory lies inside its volume ('/' when it is the volume root)."""
    return clean((datastore or {}).get("path_in_volume"))


def rel_to(datastore: str, path: str) -> Optional[str]:
    """PATH relative to the DATASTORE directory ('/'-prefixed), or None when it does not lie under it."""
    ds = posixpath.normpath(datastore)
    src = posixpath.normpath(path)
    if ds == "/":
        return src
    if not src.startswith(ds.rstrip("/") + "/"):
        return None
    return "/" + posixpath.relpath(src, ds)


def in_volume(offset_: str, rel: str) -> str:
    """The path inside the volume of the file REL (relative to a datastore whose offset is OFFSET_)."""
    return clean(posixpath.join(clean(offset_), clean(rel).lstrip("/")))


def offset_from(path_in_volume: Optional[str], rel: Optional[str]) -> Optional[str]:
    """The datastore's offset, from one file's path in the volume and its path in the datastore (None: they do
    not fit, e.g. the file is below a deeper junction)."""
    if not path_in_volume or not rel:
        return None
    piv, rel = clean(path_in_volume), clean(rel)
    if rel == "/":
        return piv
    if piv != rel and not piv.endswith(rel):
        return None
    return clean(piv[:len(piv) - len(rel)])


def disk_offset(disk: Mapping[str, Any]) -> str:
    """The offset of a disk record's datastore: from its path_in_volume and path (both written by the backup
    through this module), else the root (manifests from before the offset existed)."""
    found = offset_from(disk.get("path_in_volume"), disk.get("path"))
    return found or ROOT


def _same_mount(a: str, b: str) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


def snapshot_dir(datastore: str, offset_: str, snapshot: str) -> str:
    """The host directory that shows DATASTORE as it was in SNAPSHOT.

    ONTAP shows ``.snapshot`` at the volume root: when the datastore directory is the volume root, or the host
    path ends with the offset and that ancestor is on the same mount (the volume root is then on this host, as
    with a datastore in a subdirectory of an NFS mount of the whole volume), the copy is
    ``<volume root>/.snapshot/<snapshot><offset>``; otherwise (an NFS mount of a subdirectory) the ``.snapshot``
    directory ONTAP serves inside that directory.
    """
    root = volume_root(datastore, offset_)
    if root is not None:
        off = clean(offset_)
        return os.path.join(root, SNAPDIR, snapshot) + (off if off != ROOT else "")
    return os.path.join(posixpath.normpath(datastore), SNAPDIR, snapshot)


def volume_root(datastore: str, offset_: str) -> Optional[str]:
    """The host directory of the volume root of DATASTORE (whose offset is OFFSET_), when it is on this host:
    the datastore itself (offset '/'), or the ancestor the offset leads to when it is on the same mount."""
    ds = posixpath.normpath(datastore)
    off = clean(offset_)
    if off == ROOT:
        return ds
    if ds.endswith(off):
        root = ds[:len(ds) - len(off)] or "/"
        if _same_mount(root, ds):
            return root
    return None
