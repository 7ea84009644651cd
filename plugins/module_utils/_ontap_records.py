# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The records the ONTAP interface returns (see _ontap_interface.Ontap): the same keys from REST and ZAPI.

They are plain dicts at run time (TypedDicts: the type checker knows their keys and value types).

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

from typing import List, Optional, Tuple, TypedDict

VolumeRef = Tuple[str, str]  # (svm, volume)


class SvmRecord(TypedDict):
    name: Optional[str]
    uuid: Optional[str]
    state: Optional[str]


class VolumeRecord(TypedDict):
    name: str
    uuid: Optional[str]
    svm: Optional[str]
    junction_path: Optional[str]  # None when unmounted
    size: Optional[int]
    state: Optional[str]
    type: Optional[str]


class InterfaceRecord(TypedDict):
    name: Optional[str]
    address: Optional[str]
    svm: Optional[str]  # None for cluster scope
    services: List[str]


class LunRecord(TypedDict):
    path: Optional[str]  # /vol/<volume>/<lun>
    uuid: Optional[str]
    serial: Optional[str]  # 12 characters
    svm: Optional[str]
    volume: Optional[str]
    size: Optional[int]


class SnapshotRecord(TypedDict):
    name: str
    uuid: Optional[str]
    volume: str
    svm: str
    create_time: Optional[int]  # epoch seconds
    comment: Optional[str]
    snapmirror_label: Optional[str]
    state: str  # ONTAP's own state: valid, invalid, partial, ...
    busy: bool
    owners: List[str]


class SnapshotBrief(TypedDict):
    svm: str
    volume: str
    name: str
    uuid: Optional[str]  # None without read-back
    create_time: Optional[int]


class SnapshotSetResult(TypedDict):
    method: str  # cg | cg_temporary | cg_start_commit | multicreate | single
    snapshots: List[SnapshotBrief]


class FileInfo(TypedDict):
    name: Optional[str]
    type: Optional[str]  # file, directory, lun, symlink, ... as ONTAP reports it
    size: Optional[int]


class TempCgRecord(TypedDict):
    name: str
    uuid: Optional[str]
    svm: Optional[str]
    volumes: List[str]
    until: Optional[int]  # epoch after which its run is certainly dead


class Endpoint(TypedDict):
    svm: Optional[str]
    volume: Optional[str]
    path: str  # svm:volume
    cluster: Optional[str]  # a peer cluster's name (the relationship is held there), None for this cluster


class RelationshipRecord(TypedDict):
    uuid: Optional[str]
    source: Endpoint
    destination: Endpoint
    policy: Optional[str]
    policy_type: str  # async, vault, mirror_vault, async_mirror, ...
    state: Optional[str]
    healthy: Optional[bool]
    unhealthy_reason: Optional[str]
    lag_time: Optional[int]  # seconds
    transfer_state: Optional[str]
    last_transfer_end: Optional[int]  # epoch seconds
    labels: List[str]
