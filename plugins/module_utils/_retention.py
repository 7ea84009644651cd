# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Retention: parse `daily:7,weekly:4` and pick which of our snapshots may be pruned.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import (
    DEFAULT_PREFIX,
    SnapshotNameError,
    is_ours,
    parse_comment,
    validate_policy,
)

MAX_KEEP = 1023


class RetentionError(ValueError):
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


def _good(snapshot: Mapping[str, Any]) -> bool:
    state = snapshot.get("state")
    return state in (None, "", "valid")


def _sort_key(snapshot: Mapping[str, Any]):
    return (snapshot.get("create_time") or 0, snapshot.get("name") or "")


def select_prunable(snapshots: List[Mapping[str, Any]], policy: str, keep: int,
                    prefix: str = DEFAULT_PREFIX, exclude: Optional[List[str]] = None) -> List[Mapping[str, Any]]:
    """Which snapshots of ONE volume may be pruned for POLICY when KEEP are to be kept.

    Only snapshots that are ours (name prefix AND comment marker) with that policy count; the newest KEEP
    of them are kept, and the newest *good* (state valid) one is never returned, even if it is not among
    the newest KEEP. Names in EXCLUDE are never returned. Oldest first.
    """
    keep = validate_keep(keep)
    exclude_set = set(exclude or [])
    ours = []
    for snap in snapshots:
        if not is_ours(snap, prefix):
            continue
        meta = parse_comment(snap.get("comment")) or {}
        if meta.get("policy") != policy:
            continue
        ours.append(snap)
    ours.sort(key=_sort_key)
    if len(ours) <= keep:
        return []
    candidates = ours[:len(ours) - keep]
    good = [s for s in ours if _good(s)]
    newest_good = good[-1]["name"] if good else None
    return [s for s in candidates if s.get("name") != newest_good and s.get("name") not in exclude_set]
