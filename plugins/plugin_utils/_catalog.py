# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backup catalog the roles build from ontap_snapshot_info, and the choice of the snapshot to restore.

A catalog record is one snapshot set (one name across volumes) with its trust state: only `good` sets are
backups (see docs/backup.md, "When is a snapshot a backup"). `latest` and JMESPath queries only ever give a
good set; a pending, late or old-format set is restorable by explicit name with kvmsnap_restore_allow_crash. A
verify (kvmsnap.core.verify) picks with the same forms under kvmsnap_verify_snapshot, and boots good sets only.

This plugin_util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import CONSISTENCIES

OVERRIDE_VAR = "kvmsnap_restore_allow_crash"
SNAPSHOT_VARS = {"restore": "kvmsnap_restore_snapshot", "verify": "kvmsnap_verify_snapshot"}
VERIFY_ONLY_GOOD = ("a verify boots good backups only (kvmsnap_verify_snapshot has no override); set "
                    "kvmsnap_verify_snapshot to latest or to the name of a good backup")
RECORD_KEYS = ("name, policy, run, host, state (good, pending, late, or null: not confirmed by a run of this "
               "collection), consistency, verified (when kvmsnap.core.verify booted its VMs, or null), ontap_state, "
               "create_time, create_time_iso, volumes, missing, complete, ours, location (primary, copies, "
               "primary+copies), copies, sources")
# which copy a volume's files come back from when its own snapshot is gone: a vault keeps them longest
COPY_PREFERENCE = ("vault", "mirror")


class CatalogError(KvmsnapError, ValueError):
    """The snapshot to restore cannot be chosen; the message names the snapshot, its state and what to do."""


def _member_trust(snap: Mapping[str, Any]) -> Optional[str]:
    """good / pending / late / None (old format or foreign); ONTAP's own state must be valid for good."""
    meta = snap.get("kvmsnap") or {}
    state = snap.get("trust", meta.get("state"))
    if state == "good" and snap.get("state") not in (None, "", "valid"):
        return "late"  # the controller says the snapshot itself is not valid: never a backup
    return state


def set_state(states: List[Optional[str]]) -> Optional[str]:
    """A set's trust is its weakest member's: good only when all are good."""
    if states and all(s == "good" for s in states):
        return "good"
    if "pending" in states:
        return "pending"
    if all(s is None for s in states):
        return None
    return "late"


def set_verified(times: List[Optional[str]]) -> Optional[str]:
    """A set is verified when every member carries the token (a verify run marks all of them); the earliest time."""
    if not times or any(not t for t in times):
        return None
    return min(t for t in times if t)


def _weakest_consistency(levels: List[Optional[str]]) -> Optional[str]:
    known = [c for c in levels if c in CONSISTENCIES]
    if not known or len(known) != len(levels):
        return None
    return max(known, key=CONSISTENCIES.index)


def _record(records: Dict[str, Dict[str, Any]], snap: Mapping[str, Any]) -> Dict[str, Any]:
    meta = snap.get("kvmsnap") or {}
    rec = records.setdefault(snap["name"], {
        "name": snap["name"], "policy": meta.get("policy"), "run": meta.get("run"), "host": meta.get("host"),
        "ours": bool(meta), "create_time": snap.get("create_time"), "create_time_iso": snap.get("create_time_iso"),
        "volumes": [], "ontap_state": "valid", "copies": []})
    if (snap.get("create_time") or 0) < (rec["create_time"] or 0):
        rec["create_time"] = snap.get("create_time")
    return rec


def build_catalog(snapshot_lists: List[Mapping[str, Any]], volumes: List[str]) -> List[Dict[str, Any]]:
    """ontap_snapshot_info results (one per controller; with copies=true also the snapshots on the volumes'
    SnapMirror/SnapVault destinations) → one record per snapshot name, oldest first.

    `volumes` are the volumes whose own snapshot it is; `copies` where copies live ({volume, location, kind,
    controller, copy_controller (the controller that holds the copy), cluster (another cluster's name, or None)});
    `sources` the volumes whose own snapshot is gone, each with the copy its files come back from
    (a vault before a mirror); `missing` the needed volumes with neither. A member's trust counts from the volume
    itself, else from the copy its files would come from."""
    records: Dict[str, Dict[str, Any]] = {}
    members: Dict[str, Dict[str, Mapping[str, Any]]] = {}  # name -> volume key -> the snapshot record trusted
    copies: Dict[str, Dict[str, List[Mapping[str, Any]]]] = {}  # name -> volume key -> copy snapshot records
    wanted = set(volumes)
    for item in snapshot_lists:
        ctrl = item.get("controller") or item.get("item")
        for snap in item.get("snapshots") or []:
            rec = _record(records, snap)
            key = "%s:%s:%s" % (ctrl, snap.get("svm"), snap.get("volume"))
            rec["volumes"].append(key)
            members.setdefault(snap["name"], {})[key] = snap
        for snap in item.get("copies") or []:
            rec = _record(records, snap)
            key = "%s:%s" % (ctrl, snap.get("copy_of"))
            rec["copies"].append({"volume": key, "location": snap.get("location"), "kind": snap.get("kind"),
                                  "controller": ctrl, "copy_controller": snap.get("copy_controller") or ctrl,
                                  "cluster": snap.get("cluster")})
            copies.setdefault(snap["name"], {}).setdefault(key, []).append(snap)
    out = []
    for name, rec in records.items():
        rec["volumes"].sort()
        rec["copies"].sort(key=lambda c: (c["volume"], c["location"] or ""))
        chosen = dict(members.get(name) or {})
        rec["sources"] = {}
        for key, snaps in sorted((copies.get(name) or {}).items()):
            if key in chosen:
                continue
            best = sorted(snaps, key=lambda c: (COPY_PREFERENCE.index(c.get("kind")) if c.get("kind") in
                                                COPY_PREFERENCE else len(COPY_PREFERENCE), c.get("location") or ""))[0]
            chosen[key] = best
            ctrl = key.split(":", 1)[0]
            # copy_controller: where the copy is read (another cluster's controller for a DR-site vault)
            rec["sources"][key] = {"location": best.get("location"), "kind": best.get("kind"), "controller": ctrl,
                                   "copy_controller": best.get("copy_controller") or ctrl,
                                   "cluster": best.get("cluster")}
        for snap in chosen.values():
            if snap.get("state") not in (None, "", "valid"):
                rec["ontap_state"] = snap.get("state")
        rec["missing"] = sorted(wanted - set(chosen))
        rec["complete"] = not rec["missing"]
        rec["location"] = ("primary+copies" if rec["volumes"] and rec["sources"] else
                           "copies" if rec["sources"] else "primary")
        rec["state"] = set_state([_member_trust(s) for s in chosen.values()])
        rec["consistency"] = _weakest_consistency([s.get("consistency", (s.get("kvmsnap") or {}).get("consistency"))
                                                   for s in chosen.values()])
        rec["verified"] = set_verified([(s.get("kvmsnap") or {}).get("verified") for s in chosen.values()])
        out.append(rec)
    return sorted(out, key=lambda r: (r["create_time"] or 0, r["name"]))


LISTED = 10  # snapshots a "what exists" listing names (newest first)


def existing(records: Sequence[Mapping[str, Any]], limit: int = LISTED) -> str:
    """What exists, newest first and bounded: 'name (policy P, state S, created T), ... (N older not shown)'."""
    ordered = sorted(records, key=lambda r: (r.get("create_time") or 0, r.get("name") or ""), reverse=True)
    ours = [r for r in ordered if r.get("ours") and r.get("policy") != "prerestore"] or ordered
    if not ours:
        return "no snapshot exists on the needed volumes"
    items = ["%s (policy %s, state %s, created %s%s)" % (
        r["name"], r.get("policy") or "-", r.get("state") or "none", r.get("create_time_iso") or "?",
        "" if r.get("complete", True) else ", missing on %s" % ", ".join(r.get("missing") or [])) for r in ours[:limit]]
    more = len(ours) - limit
    return "newest first: %s%s" % ("; ".join(items), "; %d older not shown" % more if more > 0 else "")


HOW_TO_PICK = ("Pick one with %s: its name, 'latest', or a JMESPath query over these records (give "
               "it as JSON with -e so that Ansible keeps its spaces), e.g. [?policy=='weekly' && state=='good'] | [-1]")


def how_to_pick(operation: str = "restore") -> str:
    return HOW_TO_PICK % SNAPSHOT_VARS[operation]


def _newest_good(records: Sequence[Mapping[str, Any]]) -> str:
    good = [r for r in records if r.get("ours") and r.get("complete", True) and r.get("state") == "good"
            and r.get("policy") != "prerestore"]
    return "; newest good backup: %s" % good[-1]["name"] if good else "; no good backup exists on these volumes"


def describe_state(rec: Mapping[str, Any]) -> str:
    state = rec.get("state")
    if state == "pending":
        return "pending (its run never confirmed it: it may have been taken after the VMs were released)"
    if state == "late":
        level = rec.get("consistency") or "crash"
        return "late (taken after its run's deadline, or its run died; consistency %s)" % level
    if not rec.get("ours"):
        return "not a snapshot of this collection"
    return "without a trust state (made before runs confirmed their snapshots)"


def stale_reason(manifest: Mapping[str, Any], rec: Mapping[str, Any]) -> Optional[str]:
    """Why a manifest found in snapshot set REC is not a backup of its VM in that set (None: it is).

    Manifests stay in .kvmsnap/ between runs, so a later run that did not protect a VM still carries the VM's
    older manifest: the manifest must name this snapshot, and the run that made it (the snapshot's comment).
    """
    snap, run = manifest.get("snapshot"), manifest.get("run_id")
    if snap and snap != rec.get("name"):
        return "its manifest there is from snapshot %s (run %s), left in .kvmsnap/ by that run" % (snap, run or "?")
    if run and rec.get("run") and run != rec.get("run"):
        return "its manifest there is from run %s, the snapshot from run %s" % (run, rec.get("run"))
    return None


def protects(rec: Mapping[str, Any], entries: List[Mapping[str, Any]], vm: str) -> bool:
    return any(vm in (e.get("name"), e.get("uuid")) and stale_reason(e, rec) is None for e in entries)


def _copies_hint(good: List[Dict[str, Any]], operation: str) -> str:
    """What to do when `latest` finds no backup of a VM but older good backups live only on SnapMirror/SnapVault
    copies: their manifests are not read to pick one (that would stage every copy's), so the user names one."""
    only_copies = [r for r in good if r.get("location") == "copies"]
    if not only_copies or operation != "restore":
        return ""
    newest = only_copies[-1]
    where = sorted({str(c.get("location")) for c in newest.get("copies") or [] if c.get("location")})
    return (" %d older good backup(s) live only on SnapMirror/SnapVault copies, whose VMs `latest` does not read "
            "(newest: %s on %s). If the VM was deleted before the primary's retention window, restore it from a "
            "copy by name: %s: %s (or a query over the catalogue, docs/restore.md)."
            % (len(only_copies), newest["name"], ", ".join(where) or "a copy", SNAPSHOT_VARS[operation],
               newest["name"]))


def _latest_for(good: List[Dict[str, Any]], protected: Mapping[str, List[Mapping[str, Any]]],
                requested: List[str], operation: str = "restore") -> Dict[str, Any]:
    """The newest good set that protected every requested VM (one restore uses one snapshot)."""
    var = SNAPSHOT_VARS[operation]
    for rec in reversed(good):
        if all(protects(rec, protected.get(rec["name"]) or [], vm) for vm in requested):
            return rec
    newest = {vm: next((r["name"] for r in reversed(good) if protects(r, protected.get(r["name"]) or [], vm)),
                       None) for vm in requested}
    lacking = [vm for vm, name in newest.items() if name is None]
    if lacking:
        raise CatalogError("%s=latest: no good backup protected VM %s (a snapshot that only "
                           "carries an older run's manifest of a VM is no backup of it).%s"
                           % (var, ", ".join(lacking), _copies_hint(good, operation)))
    raise CatalogError("%s=latest: no good backup protected all of %s (newest per VM: %s); "
                       "%s them in separate runs, or name one snapshot." % (
                           var, operation, ", ".join(requested), ", ".join("%s: %s" % kv for kv in newest.items())))


def select(records: List[Dict[str, Any]], spec: Mapping[str, Any],
           protected: Optional[Mapping[str, List[Mapping[str, Any]]]] = None,
           requested: Optional[List[str]] = None, operation: str = "restore") -> Dict[str, Any]:
    """Pick the snapshot to restore: 'latest' (newest good set on every needed volume), 'latest_verified' (the newest
    of those that kvmsnap.core.verify marked verified), a name, or a JMESPath query
    (its result: a record, a name, or a list of them - the last one is used). SPEC: {kind, value, allow_crash}.

    With PROTECTED (snapshot → manifests it carries, backup_manifest state=protected) and REQUESTED VMs, 'latest'
    is the newest good set that protected every requested VM: its manifest of the VM names that set and its run.
    OPERATION (restore or verify) names the variables and the way out in the messages: a verify has no override.
    """
    if operation not in SNAPSHOT_VARS:
        raise CatalogError("select: operation %r; allowed: %s." % (operation, ", ".join(SNAPSHOT_VARS)))
    var = SNAPSHOT_VARS[operation]
    verify = operation == "verify"
    kind, value = spec.get("kind"), spec.get("value")
    if kind == "latest_verified":
        good = [r for r in records if r["ours"] and r["complete"] and r["state"] == "good"
                and r.get("policy") != "prerestore"]
        checked = [r for r in good if r.get("verified")]
        if not checked:
            way_out = ("verify a good backup first with %s=latest (or its name)" % var if verify else
                       "Run kvmsnap.core.verify, or restore with %s=latest" % var)
            raise CatalogError("%s=latest_verified: none of the %d good backup(s) on every needed "
                               "volume was verified (booted by the playbook kvmsnap.core.verify)%s. %s."
                               % (var, len(good), "; newest good: %s" % good[-1]["name"] if good else "",
                                  way_out[0].upper() + way_out[1:]))
        if protected is not None and requested:
            return _latest_for(checked, protected, list(requested), operation)
        return checked[-1]
    if kind == "latest":
        good = [r for r in records if r["ours"] and r["complete"] and r["state"] == "good"
                and r.get("policy") != "prerestore"]
        if good and protected is not None and requested:
            return _latest_for(good, protected, list(requested), operation)
        if not good:
            others = [r for r in records if r["ours"] and r["complete"] and r.get("policy") != "prerestore"]
            hint = ""
            if others:
                hint = " %d snapshot(s) of this collection are not confirmed backups (newest: %s, %s); " % (
                    len(others), others[-1]["name"], others[-1]["state"] or "no trust state")
                hint += ("a verify boots good backups only: take a new backup (kvmsnap.core.backup), then verify it."
                         if verify else "restore one by name with %s: true if you accept a crash-consistent state."
                         % OVERRIDE_VAR)
            raise CatalogError("%s=latest: no good backup of this collection exists on every "
                               "needed volume (%d snapshot(s) listed).%s" % (var, len(records), hint))
        return good[-1]
    if kind == "name":
        rec = next((r for r in records if r["name"] == value), None)
        if rec is None:
            raise CatalogError("%s: snapshot %r exists on none of the volumes. Snapshots there, %s. "
                               "%s." % (var, value, existing(records), how_to_pick(operation)))
        if rec["state"] != "good" and not (spec.get("allow_crash") and not verify):
            if verify:
                raise CatalogError("%s: snapshot %s is %s, not a good backup; %s%s."
                                   % (var, value, describe_state(rec), VERIFY_ONLY_GOOD, _newest_good(records)))
            raise CatalogError("%s: snapshot %s is %s, not a good backup; set %s: true to "
                               "restore it anyway (its VMs come back crash-consistent at best)."
                               % (var, value, describe_state(rec), OVERRIDE_VAR))
        return rec
    try:
        import jmespath
    except ImportError:
        raise CatalogError("a JMESPath %s needs the jmespath library on the controller." % var) from None
    try:
        found = jmespath.search(value, records)
    except Exception as exc:
        raise CatalogError("%s: query %r failed: %s" % (var, value, exc)) from None
    if isinstance(found, list):
        found = found[-1] if found else None
    if isinstance(found, str):
        found = next((r for r in records if r["name"] == found), None)
    if not isinstance(found, Mapping) or "name" not in found:
        raise CatalogError("%s query %r selected no snapshot of the catalog (records have: %s). "
                           "Snapshots there, %s. %s." % (var, value, RECORD_KEYS, existing(records),
                                                         how_to_pick(operation)))
    rec = next((r for r in records if r["name"] == found["name"]), dict(found))
    if rec.get("state") != "good":
        # a query never reaches past the good backups, override or not: that takes an explicit name
        way_out = ("add [?state=='good'] to the query; %s" % VERIFY_ONLY_GOOD if verify else
                   "add [?state=='good'] to the query, or give its name with %s: true to restore it anyway"
                   % OVERRIDE_VAR)
        raise CatalogError("%s query %r selected snapshot %s, which is %s, not a good backup; %s."
                           % (var, value, rec["name"], describe_state(rec), way_out))
    return rec
