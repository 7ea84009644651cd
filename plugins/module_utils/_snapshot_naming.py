# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Snapshot names and the kvmsnap metadata marker carried in the snapshot comment.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, Dict, List, Mapping, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError

DEFAULT_PREFIX = "kvmsnap"
MARKER = "kvmsnap:v1"
MAX_NAME = 255
MAX_COMMENT = 255
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_.:@-]+$")
POLICY_RE = re.compile(r"^[A-Za-z0-9_]+$")
RESERVED_PREFIXES = ("hourly.", "daily.", "weekly.", "monthly.", "snapmirror.", "vserverdr", "smas",
                     "sm_created", "ontap_ransom", ".")
ALLOWED_FORM = ("at most 255 characters from [A-Za-z0-9_.-], starting with a letter or '_', not starting with "
                "a reserved prefix (%s)" % ", ".join(RESERVED_PREFIXES))
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
VERIFIED_RE = re.compile(r"^\d{8}T\d{6}Z$")


class SnapshotNameError(KvmsnapError, ValueError):
    """A snapshot name, prefix or policy is not valid; the message names the field and the allowed form."""


def validate_snapshot_name(name: Any, field: str = "name") -> str:
    """Return NAME if it is a valid snapshot name, else raise SnapshotNameError naming FIELD and the allowed form."""
    if not isinstance(name, str) or not name:
        raise SnapshotNameError("%s: a snapshot name is required (%s)." % (field, ALLOWED_FORM))
    if len(name) > MAX_NAME:
        raise SnapshotNameError("%s: snapshot name is %d characters long; allowed: %s." % (field, len(name), ALLOWED_FORM))
    lowered = name.lower()
    for prefix in RESERVED_PREFIXES:
        if lowered.startswith(prefix):
            raise SnapshotNameError("%s: snapshot name %r starts with the reserved prefix %r (ONTAP or other tools use "
                                    "it); allowed: %s." % (field, name, prefix, ALLOWED_FORM))
    if not NAME_RE.match(name):
        bad = sorted(set(c for c in name if not re.match(r"[A-Za-z0-9_.-]", c)))
        if bad:
            what = "characters %s are not allowed" % ", ".join(repr(c) for c in bad)
        else:
            what = "the first character must be a letter or '_'"
        raise SnapshotNameError("%s: invalid snapshot name %r: %s; allowed: %s." % (field, name, what, ALLOWED_FORM))
    return name


def validate_prefix(prefix: Any, field: str = "prefix") -> str:
    """A name prefix must itself be a valid name start and leave room for the policy and timestamp."""
    validate_snapshot_name(prefix, field)
    if len(prefix) > 200:
        raise SnapshotNameError("%s: prefix is %d characters long; at most 200 allowed." % (field, len(prefix)))
    return prefix


def validate_policy(policy: Any, field: str = "policy") -> str:
    if not isinstance(policy, str) or not POLICY_RE.match(policy) or len(policy) > 32:
        raise SnapshotNameError("%s: invalid retention policy %r; allowed: 1-32 characters from [A-Za-z0-9_] "
                                "(e.g. daily, weekly)." % (field, policy))
    return policy


def validate_backup_policy(policy: Any, field: str = "policy") -> str:
    """A policy a backup may use: valid, and not one the collection uses for its own snapshots."""
    validate_policy(policy, field)
    if policy.lower() in RESERVED_POLICIES:
        raise SnapshotNameError("%s: %r is reserved for this collection's own snapshots (restore safety copies); "
                                "choose another policy name (e.g. daily, weekly)." % (field, policy))
    return policy


def default_name(policy: str, when: Optional[datetime.datetime] = None, prefix: str = DEFAULT_PREFIX) -> str:
    """`<prefix>-<policy>_<UTC %Y%m%dT%H%M%SZ>`."""
    validate_prefix(prefix)
    validate_policy(policy)
    if when is None:
        when = datetime.datetime.now(datetime.timezone.utc)
    elif when.tzinfo is not None:
        when = when.astimezone(datetime.timezone.utc)
    name = "%s-%s_%s" % (prefix, policy, when.strftime(TIME_FORMAT))
    return validate_snapshot_name(name)


def parse_name(name: str, prefix: str = DEFAULT_PREFIX) -> Optional[dict]:
    """Split a default-form name into {prefix, policy, time (epoch s)} or None."""
    m = re.match(r"^%s-([A-Za-z0-9_]+)_(\d{8}T\d{6}Z)$" % re.escape(prefix), name or "")
    if not m:
        return None
    when = datetime.datetime.strptime(m.group(2), TIME_FORMAT).replace(tzinfo=datetime.timezone.utc)
    return {"prefix": prefix, "policy": m.group(1), "time": int(when.timestamp())}


# Trust states a snapshot's comment carries (see docs/backup.md, "When is a snapshot a backup"):
# pending - created by a run that has not (yet) confirmed it; never a backup while pending;
# good    - its run verified it (VMs quiesced at the point in time, data present) and confirmed it;
# late    - its run could not confirm it in time (snapshot after the deadline, run died): crash-consistent.
STATES = ("pending", "good", "late")
CONSISTENCIES = ("offline", "application", "filesystem", "suspended", "crash")
# The policy names the collection uses itself (safety snapshots of a restore): refused for backups.
RESERVED_POLICIES = ("prerestore",)


def build_comment(policy: str, run: str, host: Optional[str] = None, extra: Optional[str] = None,
                  state: str = "pending", consistency: Optional[str] = None, until: Optional[int] = None,
                  verified: Optional[str] = None) -> str:
    """`kvmsnap:v1 policy=<p> run=<id>[ host=<h>] state=<s>[ consistency=<c>][ until=<epoch>][ verified=<time>]`
    (+ ' | ' free text).

    UNTIL is the epoch second after which a still-pending snapshot can never be confirmed by its run:
    later runs then mark it late. VERIFIED (UTC, %Y%m%dT%H%M%SZ) is when kvmsnap.core.verify last booted every VM
    of the snapshot (only a good snapshot carries it).
    """
    if verified is not None and not VERIFIED_RE.match(str(verified)):
        raise SnapshotNameError("verified: %r is not a UTC time; allowed: YYYYMMDDTHHMMSSZ." % (verified,))
    validate_policy(policy)
    for field, value in (("run", run), ("host", host)):
        if value is None and field == "host":
            continue
        if not isinstance(value, str) or not TOKEN_RE.match(value):
            raise SnapshotNameError("%s: invalid value %r for the snapshot metadata; allowed: characters "
                                    "[A-Za-z0-9_.:@-], no spaces." % (field, value))
    if state not in STATES:
        raise SnapshotNameError("state: %r is not a snapshot trust state; allowed: %s." % (state, ", ".join(STATES)))
    if consistency is not None and consistency not in CONSISTENCIES:
        raise SnapshotNameError("consistency: %r is not a consistency level; allowed: %s."
                                % (consistency, ", ".join(CONSISTENCIES)))
    text = "%s policy=%s run=%s" % (MARKER, policy, run)
    if host:
        text += " host=%s" % host
    text += " state=%s" % state
    if consistency:
        text += " consistency=%s" % consistency
    if until is not None:
        text += " until=%d" % int(until)
    if verified:
        text += " verified=%s" % verified
    if extra:
        text += " | %s" % extra
    if len(text) > MAX_COMMENT:
        raise SnapshotNameError("comment: the snapshot comment with the kvmsnap metadata is %d characters long; at most "
                                "%d allowed (shorten comment, run or host)." % (len(text), MAX_COMMENT))
    return text


def parse_comment(comment: Optional[str]) -> Optional[dict]:
    """Return {policy, run, host, state, consistency, until, extra} if COMMENT carries our marker, else None.

    A comment without `state=` (written before trust states existed) parses as state None: not good.
    """
    if not comment or not isinstance(comment, str):
        return None
    head, _sep, extra = comment.partition(" | ")
    parts = head.strip().split()
    if not parts or parts[0] != MARKER:
        return None
    meta: dict = {"policy": None, "run": None, "host": None, "state": None, "consistency": None, "until": None,
                  "verified": None}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if sep and key in meta:
            meta[key] = value
    if not meta["policy"] or not meta["run"]:
        return None
    if meta["state"] not in STATES:
        meta["state"] = None
    if meta["consistency"] not in CONSISTENCIES:
        meta["consistency"] = None
    try:
        meta["until"] = int(meta["until"]) if meta["until"] is not None else None
    except ValueError:
        meta["until"] = None
    if meta["verified"] is not None and not VERIFIED_RE.match(meta["verified"]):
        meta["verified"] = None
    meta["extra"] = extra or None
    return meta


def restate_comment(comment: str, state: str, consistency: Optional[str] = None) -> str:
    """COMMENT with its trust state (and consistency) replaced; `until` is dropped once a state is final."""
    meta = parse_comment(comment)
    if meta is None:
        raise SnapshotNameError("comment: %r carries no kvmsnap metadata; only this collection's snapshots change "
                                "state." % (comment,))
    return build_comment(meta["policy"], meta["run"], meta["host"], meta["extra"], state=state,
                         consistency=consistency if consistency is not None else meta["consistency"],
                         until=meta["until"] if state == "pending" else None, verified=meta["verified"])


def verified_comment(comment: str, when: str) -> str:
    """COMMENT with its verified token set to WHEN (replacing an earlier one); everything else is kept."""
    meta = parse_comment(comment)
    if meta is None:
        raise SnapshotNameError("comment: %r carries no kvmsnap metadata; only this collection's snapshots are "
                                "marked verified." % (comment,))
    if meta["state"] != "good":
        raise SnapshotNameError("comment: the snapshot is %s, not a good backup; only a good backup is marked "
                                "verified." % (meta["state"] or "without a trust state"))
    return build_comment(meta["policy"], meta["run"], meta["host"], meta["extra"], state="good",
                         consistency=meta["consistency"], until=meta["until"], verified=when)


def trust_state(snapshot: Mapping[str, Any]) -> Optional[str]:
    """pending / good / late for our snapshots; None for foreign ones and ones without a state."""
    meta = parse_comment(snapshot.get("comment"))
    return meta["state"] if meta else None


def is_good(snapshot: Mapping[str, Any]) -> bool:
    """A backup: our marker with state good, and the controller's own state valid (or not reported)."""
    return trust_state(snapshot) == "good" and snapshot.get("state") in (None, "", "valid")


def is_orphaned(snapshot: Mapping[str, Any], now: float) -> bool:
    """A pending snapshot whose run can no longer confirm it (its `until` has passed, or it has none)."""
    meta = parse_comment(snapshot.get("comment"))
    if not meta or meta["state"] != "pending":
        return False
    return meta["until"] is None or now > meta["until"]


def is_ours(snapshot: Mapping[str, Any], prefix: str = DEFAULT_PREFIX) -> bool:
    """True if the snapshot's name has our prefix AND its comment carries our marker."""
    name = snapshot.get("name") or ""
    if not name.startswith(prefix + "-"):
        return False
    return parse_comment(snapshot.get("comment")) is not None


def has_marker(snapshot: Mapping[str, Any]) -> bool:
    """True if the comment carries our marker (whatever the name)."""
    return parse_comment(snapshot.get("comment")) is not None


# What an existing snapshot set may be to count as the asking run's own result (see existing_set).
ACCEPT = ("same_run", "any_run", "good")


def existing_set(name: str, found: Mapping[str, Optional[Mapping[str, Any]]], run: Optional[str] = None,
                 accept: str = "good") -> Dict[str, Any]:
    """Decide what snapshot NAME, already on some volumes of a run, means for that run (the one place that does).

    FOUND maps each volume of the run ("svm:volume", or "controller:svm:volume") to the snapshot named NAME on
    it (a record with its comment and ONTAP state), or None. Returns {verdict, kind, present, missing, reason}:
    - verdict "free": on no volume: take it;
    - verdict "done": on every volume with this collection's metadata, and the run's own result: made by run RUN
      (a retry of that run), or by any run (ACCEPT "any_run"), or confirmed good (ACCEPT "good"): nothing to do,
      F11 (docs/dev/faults.md#f11);
    - verdict "clash": anything else, never overwritten nor taken over; KIND says why: "foreign" (no metadata),
      "partial" (not on every volume), "other_run" (ACCEPT "same_run": another run's) or "not_good" (ACCEPT
      "good": another run's that is pending, late or without a trust state); REASON says it in words.
    """
    if accept not in ACCEPT:
        raise ValueError("accept: %r; allowed: %s" % (accept, ", ".join(ACCEPT)))
    present = [ref for ref, snap in found.items() if snap]
    missing = [ref for ref, snap in found.items() if not snap]
    out: Dict[str, Any] = {"verdict": "free", "kind": None, "present": present, "missing": missing, "reason": ""}
    if not present:
        return out
    snaps = {ref: found[ref] or {} for ref in present}
    foreign = [ref for ref in present if not has_marker(snaps[ref])]
    runs = {ref: (parse_comment(snaps[ref].get("comment")) or {}).get("run") for ref in present}
    others = [ref for ref in present if run is None or runs[ref] != run]
    out["verdict"] = "clash"
    if foreign:
        out.update(kind="foreign", reason="snapshot %s already exists on %s but was not created by kvmsnap.core (no "
                   "kvmsnap metadata in its comment)" % (name, ", ".join(foreign)))
    elif missing:
        out.update(kind="partial", reason="snapshot %s already exists on %s but not on %s, so it is not one "
                   "consistent set" % (name, ", ".join(present), ", ".join(missing)))
    elif not others or accept == "any_run":
        out["verdict"] = "done"
    elif accept == "same_run":
        out.update(kind="other_run", reason="snapshot %s already exists on %s, made by run %s, not by this run (%s)" % (
            name, ", ".join(others), ", ".join(sorted(set(str(runs[ref]) for ref in others))), run))
    elif all(is_good(snaps[ref]) for ref in others):
        out["verdict"] = "done"
    else:
        bad = [ref for ref in others if not is_good(snaps[ref])]
        states: List[str] = sorted(set(str(trust_state(snaps[ref]) or "none") for ref in bad))
        out.update(kind="not_good", reason="snapshot %s already exists on %s, made by run %s, but is not a confirmed "
                   "backup (state %s)" % (name, ", ".join(bad), ", ".join(sorted(set(str(runs[ref]) for ref in bad))),
                                          ", ".join(states)))
    return out
