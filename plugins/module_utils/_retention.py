# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Retention: parse `daily:7,weekly:4` and pick which of our snapshot sets may be pruned (whole sets, good ones counted).

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import (
    DEFAULT_PREFIX,
    SnapshotNameError,
    is_good,
    is_orphaned,
    is_ours,
    parse_comment,
    trust_state,
    validate_policy,
)

MAX_KEEP = 1023


class RetentionError(KvmsnapError, ValueError):
    """A retention specification is invalid; the message names the entry and the allowed form."""


def validate_keep(keep: Any, field: str = "keep") -> int:
    """keep is an int 1..1023; bool, float, strings that are not integers are refused."""
    if isinstance(keep, bool):
        raise RetentionError("%s: %r is a boolean; expected an integer from 1 to %d." % (field, keep, MAX_KEEP))
    if isinstance(keep, str):
        text = keep.strip()
        if not text.isdigit():
            raise RetentionError("%s: %r is not an integer; expected an integer from 1 to %d."
                                 % (field, keep, MAX_KEEP))
        keep = int(text)
    if not isinstance(keep, int):
        raise RetentionError("%s: %r is not an integer; expected an integer from 1 to %d." % (field, keep, MAX_KEEP))
    if keep < 1 or keep > MAX_KEEP:
        raise RetentionError("%s: %d is out of range; expected an integer from 1 to %d (ONTAP keeps at most %d "
                             "snapshots per volume, and the newest good backup is always kept)."
                             % (field, keep, MAX_KEEP, MAX_KEEP))
    return keep


def parse_retention(spec: Any) -> Dict[str, int]:
    """`"daily:7,weekly:4"` (Snap Creator form) or {"daily": 7} → {policy: keep}."""
    result: Dict[str, int] = {}
    if isinstance(spec, Mapping):
        items = list(spec.items())
        if not items:
            raise RetentionError("retention: empty; expected e.g. 'daily:7,weekly:4' or {daily: 7}.")
        for policy, keep in items:
            try:
                validate_policy(policy, "retention")
            except SnapshotNameError as exc:
                raise RetentionError(str(exc)) from None
            result[policy] = validate_keep(keep, "retention.%s" % policy)
        return result
    if not isinstance(spec, str) or not spec.strip():
        raise RetentionError("retention: %r is not valid; expected a string like 'daily:7,weekly:4' or a dict "
                             "like {daily: 7}." % (spec,))
    entries = spec.strip().rstrip(",").split(",")
    for index, entry in enumerate(entries, start=1):
        entry = entry.strip()
        if not entry:
            raise RetentionError("retention: entry %d is empty; expected 'policy:keep' entries separated by ','."
                                 % index)
        policy, sep, keep = entry.partition(":")
        if not sep:
            raise RetentionError("retention: entry %d (%r) has no ':'; expected 'policy:keep' like 'daily:7'."
                                 % (index, entry))
        policy = policy.strip()
        try:
            validate_policy(policy, "retention entry %d" % index)
        except SnapshotNameError as exc:
            raise RetentionError(str(exc)) from None
        if policy in result:
            raise RetentionError("retention: entry %d repeats policy %r." % (index, policy))
        result[policy] = validate_keep(keep.strip(), "retention entry %d (%s)" % (index, policy))
    return result


def _sort_key(item: Mapping[str, Any]):
    return (item.get("create_time") or 0, item.get("name") or "")


def set_trust(members: List[Mapping[str, Any]], now: float) -> str:
    """The trust of a snapshot set: good only when every member is good; one live pending member keeps it pending.

    Members that disagree (a comment rewrite that failed half-way) give the weakest: pending (not orphaned)
    > late; old-format (no state), orphaned pending and late members make it late.
    """
    if all(is_good(m) for m in members):
        return "good"
    if any(trust_state(m) == "pending" and not is_orphaned(m, now) for m in members):
        return "pending"
    return "late"


def snapshot_sets(snapshots_by_volume: Mapping[Any, Sequence[Mapping[str, Any]]], policy: str,
                  prefix: str = DEFAULT_PREFIX, now: Optional[float] = None) -> List[Dict[str, Any]]:
    """Group our snapshots of POLICY by name across volumes: [{name, create_time, trust, members: {ref: snap}}].

    A set is one backup: the snapshots with the same name on the volumes given. Oldest first.
    """
    now = time.time() if now is None else now
    sets: Dict[str, Dict[str, Any]] = {}
    for ref, snaps in snapshots_by_volume.items():
        for snap in snaps:
            if not is_ours(snap, prefix):
                continue
            meta = parse_comment(snap.get("comment")) or {}
            if meta.get("policy") != policy:
                continue
            entry = sets.setdefault(snap["name"], {"name": snap["name"], "create_time": None, "members": {}})
            entry["members"][ref] = snap
            # the set's time is its newest member's: never judged older than any of its snapshots
            entry["create_time"] = max(entry["create_time"] or 0, snap.get("create_time") or 0)
    out = sorted(sets.values(), key=_sort_key)
    for entry in out:
        entry["trust"] = set_trust(list(entry["members"].values()), now)
    return out


def select_prunable_sets(snapshots_by_volume: Mapping[Any, Sequence[Mapping[str, Any]]], policy: str, keep: int,
                         prefix: str = DEFAULT_PREFIX, exclude: Optional[List[str]] = None,
                         now: Optional[float] = None) -> List[Dict[str, Any]]:
    """Which whole snapshot sets of POLICY may be pruned when KEEP good ones are to be kept (docs/backup.md).

    - only good sets count toward KEEP; the newest KEEP good sets stay (so the newest good set always stays);
      older good sets go;
    - pending sets that are not orphaned never go (their run may still confirm them);
    - late sets (also orphaned pending and old-format ones, never good) older than the oldest kept good set go;
      newer ones stay; with no good set at all, none go;
    - names in EXCLUDE never go. Oldest first; the whole set is decided at once, never per volume.
    """
    keep = validate_keep(keep)
    exclude_set = set(exclude or [])
    sets = snapshot_sets(snapshots_by_volume, policy, prefix, now)
    good = [entry for entry in sets if entry["trust"] == "good"]
    kept_good = good[-keep:]
    oldest_kept = _sort_key(kept_good[0]) if kept_good else None
    out = []
    for entry in sets:
        if entry["name"] in exclude_set or entry in kept_good or entry["trust"] == "pending":
            continue
        if entry["trust"] == "good" or (oldest_kept is not None and _sort_key(entry) < oldest_kept):
            out.append(entry)
    return out


def select_prunable(snapshots: List[Mapping[str, Any]], policy: str, keep: int,
                    prefix: str = DEFAULT_PREFIX, exclude: Optional[List[str]] = None,
                    now: Optional[float] = None) -> List[Mapping[str, Any]]:
    """select_prunable_sets for ONE volume: the snapshots to prune, oldest first."""
    sets = select_prunable_sets({"volume": snapshots}, policy, keep, prefix, exclude, now)
    return [entry["members"]["volume"] for entry in sets]
