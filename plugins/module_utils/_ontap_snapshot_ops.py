# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Snapshot-set logic shared by the ontap_* modules and vm_backup: ensure/delete a set, prune, info,
restore and SnapMirror status. Works on any Ontap client (REST or ZAPI); check mode never mutates.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_args import OptionError
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_interface import (
    Ontap,
    epoch_to_iso,
    snapshot_rel_path,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_records import (
    RelationshipRecord,
    SnapshotRecord,
    VolumeRef,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._retention import select_prunable_sets
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import (
    CONSISTENCIES,
    DEFAULT_PREFIX,
    SnapshotNameError,
    existing_set,
    is_good,
    is_orphaned,
    is_ours,
    parse_comment,
    restate_comment,
    verified_comment,
)

CONFIRM_STATES = ("good", "late")
# what to do when snapshot NAME exists already (a kind of _snapshot_naming.existing_set)
EXISTING_HINTS = {
    "foreign": "It is never overwritten: choose another name, or delete that snapshot first if it is not needed.",
    "partial": "Delete the partial set (state: absent) or choose another name; an existing snapshot is never "
               "overwritten.",
    "other_run": "Another run's snapshot is never taken over as this run's backup: choose another name, or run again "
                 "with that run's run_id if this is a rerun of it.",
    "not_good": "A snapshot that is not a confirmed backup is never taken over: choose another name.",
}


class SnapshotTrustError(OntapError):
    """A snapshot cannot be confirmed: missing, foreign, another run's, or already in another final state."""


def _ref(svm: str, vol: str) -> str:
    return "%s:%s" % (svm, vol)


# ---- create / delete -------------------------------------------------------------------------------
def ensure_snapshot_set(client: Ontap, volumes: List[VolumeRef], name: str, comment: str,
                        snapmirror_label: Optional[str] = None, check_mode: bool = False,
                        until: Optional[int] = None, same_run_only: bool = True) -> Dict[str, Any]:
    """Make sure snapshot NAME exists on every volume, created by us as one consistent set.

    Present everywhere with our metadata and the same run id (a rerun, F11 (docs/dev/faults.md#f11)) → changed False. Present on some
    volumes only, without our metadata, or made by another run → OntapError (never overwritten, never adopted:
    another run's snapshot must not become this run's backup; SAME_RUN_ONLY=False, for a caller that names no
    run, accepts any run's); _snapshot_naming.existing_set decides. UNTIL goes into a temporary CG's name.
    Returns {changed, method, snapshots, msg}.
    """
    what = "create snapshot %s on %s" % (name, ", ".join(_ref(*v) for v in volumes))
    existing: Dict[VolumeRef, Optional[SnapshotRecord]] = {}
    for svm, vol in volumes:
        existing[(svm, vol)] = client.get_snapshot(svm, vol, name)
    run = (parse_comment(comment) or {}).get("run")
    found = existing_set(name, {_ref(*v): snap for v, snap in existing.items()}, run,
                         accept="same_run" if same_run_only else "any_run")
    if found["verdict"] == "clash":
        raise client.error(found["reason"], what, code="13020", hint=EXISTING_HINTS[found["kind"]])
    if found["verdict"] == "done":
        snaps = [_brief(existing[v] or {}, v) for v in volumes]
        return {"changed": False, "method": None, "snapshots": snaps,
                "msg": "snapshot %s already exists on all %d volume(s)" % (name, len(volumes))}
    if check_mode:
        snaps = [{"svm": s, "volume": v, "name": name, "uuid": None, "create_time": None} for s, v in volumes]
        method = client.predict_method(volumes)
        return {"changed": True, "method": method, "snapshots": snaps,
                "msg": "would create snapshot %s on %d volume(s)" % (name, len(volumes))}
    result = client.create_snapshot_set(volumes, name, comment=comment, snapmirror_label=snapmirror_label,
                                        precheck=False, until=until)  # checked just above
    return {"changed": True, "method": result["method"], "snapshots": result["snapshots"],
            "msg": "created snapshot %s on %d volume(s) (%s)" % (name, len(volumes), result["method"])}


def _brief(snap: Mapping[str, Any], ref: VolumeRef) -> Dict[str, Any]:
    return {"svm": ref[0], "volume": ref[1], "name": snap.get("name"), "uuid": snap.get("uuid"),
            "create_time": snap.get("create_time")}


def delete_snapshot_set(client: Ontap, volumes: List[VolumeRef], name: str, check_mode: bool = False) -> Dict[str, Any]:
    """Delete NAME from every volume that has it; already absent everywhere → changed False."""
    deleted = []
    for svm, vol in volumes:
        snap = client.get_snapshot(svm, vol, name)
        if not snap:
            continue
        if snap.get("owners"):
            raise client.error("snapshot %s on %s:%s is owned by %s" % (name, svm, vol, ", ".join(snap["owners"])),
                               "delete snapshot %s on %s:%s" % (name, svm, vol), code="1638555",
                               hint="It is in use (SnapMirror base, clone or restore); release it first.")
        if not check_mode:
            client.delete_snapshot(svm, vol, name)
        deleted.append(_brief(snap, (svm, vol)))
    verb = "would delete" if check_mode else "deleted"
    msg = ("%s snapshot %s on %d volume(s)" % (verb, name, len(deleted)) if deleted
           else "snapshot %s is absent on all %d volume(s)" % (name, len(volumes)))
    return {"changed": bool(deleted), "snapshots": deleted, "msg": msg}


# ---- trust: confirm / recover ------------------------------------------------------------------------------
def _trust_error(client: Ontap, problems: List[str], name: str, operation: str, hint: str) -> SnapshotTrustError:
    return SnapshotTrustError("; ".join(problems), code="4" if all("not found" in p for p in problems) else None,
                              operation=operation, hostname=client.hostname, hint=hint)


def _ours(client: Ontap, volumes: List[VolumeRef], name: str, problems: List[str]
          ) -> List[Tuple[str, str, SnapshotRecord, Dict[str, Any], str]]:
    """(svm, volume, snapshot, its kvmsnap metadata, 'name on svm:volume') of snapshot NAME on every volume that has
    it with this collection's metadata; a volume without it, or with a foreign one, adds to PROBLEMS."""
    out = []
    for svm, vol in volumes:
        snap = client.get_snapshot(svm, vol, name)
        where = "%s on %s" % (name, _ref(svm, vol))
        meta = parse_comment(snap["comment"] if snap else None)
        if not snap:
            problems.append("snapshot %s not found" % where)
        elif meta is None:
            problems.append("snapshot %s was not made by kvmsnap.core (no kvmsnap metadata in its comment)" % where)
        else:
            out.append((svm, vol, snap, meta, where))
    return out


def confirm_snapshot_set(client: Ontap, volumes: List[VolumeRef], name: str, run_id: str, state: str = "good",
                         consistency: Optional[str] = None, check_mode: bool = False) -> Dict[str, Any]:
    """Record that run RUN_ID confirmed snapshot NAME on every volume (STATE good) or gave it up (STATE late).

    Every volume is checked before any comment changes, so a refused confirmation changes nothing. A snapshot
    already in STATE (with the same consistency) stays as it is. Returns {changed, snapshots, msg}.
    """
    if state not in CONFIRM_STATES:
        raise ValueError("state: %r cannot be confirmed; allowed: %s." % (state, ", ".join(CONFIRM_STATES)))
    if consistency is None and state == "late":
        consistency = "crash"  # nothing held the VMs at a late snapshot's point in time
    if consistency is not None and consistency not in CONSISTENCIES:
        raise ValueError("consistency: %r is not a consistency level; allowed: %s."
                         % (consistency, ", ".join(CONSISTENCIES)))
    operation = "mark snapshot %s %s on %s" % (name, state, client.hostname)
    problems: List[str] = []
    plan: List[Tuple[str, str, SnapshotRecord, Dict[str, Any], Optional[str]]] = []
    for svm, vol, snap, meta, where in _ours(client, volumes, name, problems):
        if meta["run"] != run_id:
            problems.append("snapshot %s belongs to run %s, not to run %s" % (where, meta["run"], run_id))
        elif meta["state"] == state and consistency in (None, meta["consistency"]):
            plan.append((svm, vol, snap, meta, None))
        elif meta["state"] != "pending":
            problems.append("snapshot %s is already %s%s; a confirmed or late snapshot never changes state"
                            % (where, meta["state"] or "without a trust state (old format)",
                               " (consistency %s)" % meta["consistency"] if meta["consistency"] else ""))
        else:
            plan.append((svm, vol, snap, meta, restate_comment(snap["comment"] or "", state, consistency)))
    if problems:
        raise _trust_error(client, problems, name, operation,
                           "Only the run that created a snapshot confirms it, once. List the snapshots with "
                           "kvmsnap.core.ontap_snapshot_info; give that run's run_id and the snapshot's name.")
    out = []
    changed = False
    for svm, vol, _snap, meta, new_comment in plan:
        if new_comment is not None:
            changed = True
            if not check_mode:
                client.set_snapshot_comment(svm, vol, name, new_comment)
        out.append({"svm": svm, "volume": vol, "name": name, "state": state,
                    "consistency": consistency if new_comment is not None else meta["consistency"]})
    verb = ("would mark" if check_mode else "marked") if changed else "already"
    return {"changed": changed, "snapshots": out,
            "msg": "%s snapshot %s %s on %d volume(s)" % (verb, name, state, len(out))}


def mark_verified_set(client: Ontap, volumes: List[VolumeRef], name: str, when: str,
                      check_mode: bool = False) -> Dict[str, Any]:
    """Record in the comment of good snapshot NAME on every volume that kvmsnap.core.verify booted its VMs at WHEN
    (`verified=<UTC time>`, replacing an earlier token; the rest of the comment is kept).

    Every volume is checked before any comment changes. Returns {changed, snapshots, msg}."""
    operation = "mark snapshot %s verified on %s" % (name, client.hostname)
    problems: List[str] = []
    plan: List[Tuple[str, str, str]] = []
    for svm, vol, snap, meta, where in _ours(client, volumes, name, problems):
        if meta["state"] != "good":
            problems.append("snapshot %s is %s, not a good backup" % (where, meta["state"] or "without a trust state"))
        else:
            try:
                plan.append((svm, vol, verified_comment(snap["comment"] or "", when)))
            except SnapshotNameError as exc:
                problems.append("snapshot %s: %s" % (where, exc))
    if problems:
        raise _trust_error(client, problems, name, operation,
                           "Only a good backup of this collection is marked verified; list the snapshots with "
                           "kvmsnap.core.ontap_snapshot_info.")
    if not check_mode:
        for svm, vol, comment in plan:
            client.set_snapshot_comment(svm, vol, name, comment)
    return {"changed": bool(plan), "snapshots": [{"svm": svm, "volume": vol, "name": name, "verified": when,
                                                  "comment": comment} for svm, vol, comment in plan],
            "msg": "%s snapshot %s verified=%s on %d volume(s)" % ("would mark" if check_mode else "marked", name,
                                                                   when, len(plan))}


def recover_orphans(client: Ontap, volumes: List[VolumeRef], now: Optional[float] = None,
                    prefix: str = DEFAULT_PREFIX, check_mode: bool = False) -> Dict[str, Any]:
    """Mark late what dead runs left pending, and delete their temporary consistency groups.

    A pending snapshot of ours whose `until` has passed (or that has none) can never be confirmed: it is marked
    `state=late consistency=crash`. A `kvmsnap_tmp_<until>_*` CG on the volumes' SVMs whose until has passed
    (or that has none) is deleted; one of a live run (until in the future) is kept.
    Returns {changed, marked_late, removed_cgs, msg}.
    """
    now = time.time() if now is None else now
    marked: List[dict] = []
    for svm, vol in volumes:
        for snap in client.list_snapshots(svm, vol):
            if not is_ours(snap, prefix) or not is_orphaned(snap, now):
                continue
            meta = parse_comment(snap.get("comment")) or {}
            if not check_mode:
                client.set_snapshot_comment(svm, vol, snap["name"], restate_comment(snap["comment"] or "", "late", "crash"))
            marked.append({"svm": svm, "volume": vol, "name": snap.get("name"), "run": meta.get("run")})
    removed: List[str] = []
    svms: List[str] = []
    for svm, _vol in volumes:
        if svm not in svms:
            svms.append(svm)
    for svm in svms:
        for cg in client.list_temp_cgs(svm):
            until = cg["until"]
            if until is not None and until >= now:
                continue  # a live run may be using it right now
            if not check_mode:
                client.delete_cg(cg)
            removed.append(cg["name"])
    verb = "would mark" if check_mode else "marked"
    msg = "%s %d orphaned snapshot(s) late, %s %d temporary consistency group(s)" % (
        verb, len(marked), "would remove" if check_mode else "removed", len(removed))
    return {"changed": bool(marked or removed), "marked_late": marked, "removed_cgs": removed, "msg": msg}


# ---- prune -----------------------------------------------------------------------------------------------
def prune(client: Ontap, volumes: List[VolumeRef], policy: str, keep: int, prefix: str = DEFAULT_PREFIX,
          check_mode: bool = False, exclude: Optional[List[str]] = None, now: Optional[float] = None) -> Dict[str, Any]:
    """Delete whole snapshot sets of POLICY by the retention rule (select_prunable_sets, docs/backup.md).

    A set is deleted on all its volumes or on none: a busy or owned member keeps the whole set (not_pruned,
    retried at the next prune). If ONTAP refuses a delete half-way, the members left are marked late (never
    counted or picked as a backup again; the next prune deletes them) and the set is reported as partial.
    Returns {changed, pruned, not_pruned, partial, warnings}; pruned/not_pruned list one item per volume.
    """
    by_volume = {(svm, vol): client.list_snapshots(svm, vol) for svm, vol in volumes}
    pruned: List[dict] = []
    not_pruned: List[dict] = []
    partial: List[dict] = []
    warnings: List[str] = []

    def item(ref: VolumeRef, snap: dict, reason: Optional[str] = None) -> dict:
        out = {"svm": ref[0], "volume": ref[1], "name": snap.get("name"), "create_time": snap.get("create_time")}
        if reason:
            out["reason"] = reason
        return out

    for entry in select_prunable_sets(by_volume, policy, keep, prefix=prefix, exclude=exclude, now=now):
        members = sorted(entry["members"].items())
        name = entry["name"]
        blocked = {}
        for ref, snap in members:
            if snap.get("owners"):
                blocked[ref] = "owned by %s" % ", ".join(snap["owners"])
            elif snap.get("busy"):
                blocked[ref] = "busy"
        if blocked:
            why = "; ".join("%s %s" % (_ref(*ref), reason) for ref, reason in sorted(blocked.items()))
            not_pruned.extend(item(ref, snap, blocked.get(ref) or "set kept: %s" % why) for ref, snap in members)
            warnings.append("%s: snapshot set %s not pruned on any of its %d volume(s) (%s); it will be tried "
                            "again at the next prune." % (client.hostname, name, len(members), why))
            continue
        if check_mode:
            pruned.extend(item(ref, snap) for ref, snap in members)
            continue
        if entry["trust"] == "good" and len(members) > 1:
            # first take it out of the good ones, so a delete refused half-way never leaves half a "good" backup
            for ref, snap in members:
                client.set_snapshot_comment(ref[0], ref[1], name, restate_comment(snap["comment"], "late"))
        done, failed = [], {}
        for ref, snap in members:
            try:
                client.delete_snapshot(ref[0], ref[1], name)
                done.append((ref, snap))
            except OntapError as exc:
                if not exc.is_busy:
                    if not done:
                        raise
                    exc.message += ("; snapshot set %s was already deleted on %s: the rest is marked late and "
                                    "is pruned at the next run" % (name, ", ".join(_ref(*r) for r, _s in done)))
                    raise
                failed[ref] = "busy: %s" % exc.message
        pruned.extend(item(ref, snap) for ref, snap in done)
        if failed:
            not_pruned.extend(item(ref, snap, failed[ref]) for ref, snap in members if ref in failed)
            if done:
                partial.append({"name": name, "deleted_on": [_ref(*r) for r, _s in done],
                                "kept_on": [_ref(*r) for r in sorted(failed)]})
            warnings.append("%s: snapshot set %s %s; kept on %s (%s); it is marked late there and tried again at "
                            "the next prune." % (client.hostname, name,
                                                 "partially pruned: deleted on %s" % ", ".join(_ref(*r) for r, _s in done)
                                                 if done else "not pruned",
                                                 ", ".join(_ref(*r) for r in sorted(failed)),
                                                 "; ".join(failed[r] for r in sorted(failed))))
    return {"changed": bool(pruned), "pruned": pruned, "not_pruned": not_pruned, "partial": partial, "warnings": warnings}


# ---- info --------------------------------------------------------------------------------------------------
def snapshot_record(snap: Mapping[str, Any]) -> Dict[str, Any]:
    meta = parse_comment(snap.get("comment"))
    return {"svm": snap.get("svm"), "volume": snap.get("volume"), "name": snap.get("name"), "uuid": snap.get("uuid"),
            "create_time": snap.get("create_time"), "create_time_iso": epoch_to_iso(snap.get("create_time")),
            "snapmirror_label": snap.get("snapmirror_label"), "comment": snap.get("comment"),
            "state": snap.get("state"), "busy": bool(snap.get("busy")), "owners": list(snap.get("owners") or []),
            "kvmsnap": meta, "trust": meta["state"] if meta else None,
            "consistency": meta["consistency"] if meta else None, "good": is_good(snap)}


def snapshot_info(client: Ontap, volumes: List[VolumeRef], name: Optional[str] = None, policy: Optional[str] = None,
                  only_ours: bool = False, prefix: str = DEFAULT_PREFIX) -> List[dict]:
    out = []
    for svm, vol in volumes:
        for snap in client.list_snapshots(svm, vol, name):
            rec = snapshot_record(snap)
            if only_ours and not (rec["kvmsnap"] and (rec["name"] or "").startswith(prefix + "-")):
                continue
            if policy and (rec["kvmsnap"] or {}).get("policy") != policy:
                continue
            out.append(rec)
    return out


def snapshot_copies(client: Ontap, volumes: List[VolumeRef], name: Optional[str] = None, policy: Optional[str] = None,
                    only_ours: bool = False, prefix: str = DEFAULT_PREFIX) -> Tuple[List[dict], List[dict]]:
    """The snapshots on the SnapMirror/SnapVault destinations of VOLUMES that this controller holds: records as
    snapshot_info's plus copy_of (the source svm:volume), location (svm:volume of the copy) and kind (mirror,
    vault), and the destinations it could not list (another cluster's: [{copy_of, location, kind, error}])."""
    out: List[dict] = []
    elsewhere: List[dict] = []
    try:
        rels = client.list_snapmirror(volumes)
    except OntapError as exc:
        if not exc.is_forbidden:
            raise
        # a login that may not read the relationships still lists the volumes' own snapshots
        client.warnings.append("The copies on SnapMirror/SnapVault destinations were not listed: %s" % exc)
        return out, elsewhere
    for rel in rels:
        status = relationship_status(rel)
        dst = rel["destination"]
        where = {"copy_of": rel["source"]["path"], "location": dst["path"], "kind": status["type"]}
        dst_svm, dst_vol = dst.get("svm"), dst.get("volume")
        if not dst_svm or not dst_vol:
            continue  # an SVM-DR relationship: not one volume's copy
        if dst.get("cluster"):
            # held by a peer cluster: this controller cannot list that volume, a controller of that cluster can
            elsewhere.append(dict(where, cluster=dst["cluster"], error=(
                "%s is on cluster %s, not on %s: list it with a controller of cluster %s (add one to "
                "ontap_controllers in the inventory)" % (dst["path"], dst["cluster"], client.hostname, dst["cluster"]))))
            continue
        try:
            recs = snapshot_info(client, [(dst_svm, dst_vol)], name=name, policy=policy, only_ours=only_ours,
                                 prefix=prefix)
        except OntapError as exc:
            if not (exc.is_not_found or exc.is_forbidden):
                raise
            elsewhere.append(dict(where, error=str(exc)))
            continue
        out.extend(dict(rec, **where) for rec in recs)
    return out, elsewhere


def parse_snapshot_files(files: List[str], svm: Optional[str]) -> List[Dict[str, str]]:
    """`[svm:]/vol/<volume>/<path>` entries → [{svm, volume, path}] (PATH as given, /vol/ form)."""
    out = []
    for entry in files:
        text = str(entry)
        own_svm, sep, rest = text.partition(":")
        the_svm: Optional[str]
        if sep and own_svm and not own_svm.startswith("/"):
            the_svm, path = own_svm, rest
        else:
            the_svm, path = svm, text
        parts = path.split("/")
        if not path.startswith("/vol/") or len(parts) < 4 or not parts[2]:
            raise OptionError("files: %r is not [svm:]/vol/<volume>/<path in volume>" % text)
        if not the_svm:
            raise OptionError("files: %r names no SVM; write svm:/vol/... or set the svm option" % text)
        snapshot_rel_path(path, parts[2])  # refuses '..' and empty paths
        out.append({"svm": the_svm, "volume": parts[2], "path": path})
    return out


# entries listed of a directory looked up in a snapshot (snapshot_files)
DIR_ENTRIES_MAX = 4096


def snapshot_files(client: Ontap, snapshot: str, files: List[Dict[str, str]]) -> List[dict]:
    """Per entry of FILES ({svm, volume, path}): is PATH in SNAPSHOT? {svm, volume, path, snapshot, present,
    type, size, lun_size, entries, entries_truncated}; LUN_SIZE is the live LUN's size when PATH is a LUN now
    (else None); ENTRIES those of a directory (at most DIR_ENTRIES_MAX, untrusted names; None otherwise)."""
    luns: Dict[VolumeRef, Dict[Optional[str], Any]] = {}
    out = []
    for f in files:
        ref = (f["svm"], f["volume"])
        if ref not in luns:
            luns[ref] = {lun.get("path"): lun.get("size") for lun in client.list_luns(*ref)}
        rel = snapshot_rel_path(f["path"], f["volume"])
        info = client.snapshot_file_info(f["svm"], f["volume"], snapshot, rel)
        listed = client.snapshot_dir_entries(f["svm"], f["volume"], snapshot, rel, DIR_ENTRIES_MAX) \
            if info and info.get("type") == "directory" else None
        out.append({"svm": f["svm"], "volume": f["volume"], "path": f["path"], "snapshot": snapshot,
                    "present": info is not None, "type": info["type"] if info else None, "size": info["size"] if info else None,
                    "lun_size": luns[ref].get(f["path"]), "entries": listed[0] if listed else None,
                    "entries_truncated": bool(listed and listed[1])})
    return out


# ---- restore -------------------------------------------------------------------------------------------------
def require_snapshot(client: Ontap, svm: str, volume: str, snapshot: str) -> SnapshotRecord:
    snap = client.get_snapshot(svm, volume, snapshot)
    if not snap:
        raise client.not_found("snapshot %s not found on volume %s:%s" % (snapshot, svm, volume),
                               "restore from snapshot %s" % snapshot,
                               hint="List the snapshots with kvmsnap.core.ontap_snapshot_info and give an existing one.")
    return snap


def check_new_files(client: Ontap, svm: str, volume: str, snapshot: str, restore_paths: List[Tuple[str, str]],
                    field: str = "restore_paths") -> None:
    """Before a restore to new paths writes anything: every source is a file in SNAPSHOT and nothing exists at any
    destination (a restore to another path overwrites what is there)."""
    problems = []
    for src, dst in restore_paths:
        info = client.snapshot_file_info(svm, volume, snapshot, src)
        if info is None:
            problems.append("%s is not in snapshot %s" % (src, snapshot))
        elif info.get("type") not in ("file", "lun", None):
            problems.append("%s is a %s in snapshot %s; only files can be restored to another path" % (
                src, info.get("type"), snapshot))
        if client.volume_file_info(svm, volume, dst) is not None:
            problems.append("destination %s already exists" % dst)
    if problems:
        raise client.error("%s: %s in volume %s:%s; nothing was restored" % (field, "; ".join(problems), svm, volume),
                           "restore to new paths from snapshot %s" % snapshot,
                           hint="Give destinations where no file exists (a restore to another path never replaces "
                                "a file), and sources that the snapshot holds.")


def restore_items(client: Ontap, svm: str, volume: str, snapshot: str, files: List[str], luns: List[str],
                  check_mode: bool = False, restore_paths: Optional[List[Tuple[str, str]]] = None) -> Dict[str, Any]:
    require_snapshot(client, svm, volume, snapshot)
    restored: List[Dict[str, Any]] = []
    moved = list(restore_paths or [])
    if moved:
        check_new_files(client, svm, volume, snapshot, moved)
    if luns:
        known = set(lun.get("path") for lun in client.list_luns(svm, volume))
        missing = [lun for lun in luns if lun not in known]
        if missing:
            raise client.not_found("LUN(s) %s not found in volume %s:%s" % (", ".join(missing), svm, volume),
                                   "restore LUNs from snapshot %s" % snapshot)
    items: List[Tuple[str, str, Optional[str]]] = []
    items += [("file", path, None) for path in files]
    items += [("file", src, dst) for src, dst in moved]
    items += [("lun", lun, None) for lun in luns]

    def entry(kind: str, path: str, dest: Optional[str], **more: Any) -> Dict[str, Any]:
        out = {"type": kind, "path": path}
        if dest is not None:
            out["restore_path"] = dest
        out.update(more)
        return out

    for idx, (kind, path, dest) in enumerate(items):
        try:
            if check_mode:
                method = "check_mode"
            elif kind == "file":
                method = client.restore_file(svm, volume, snapshot, path, restore_path=dest)
            else:
                method = client.restore_lun(svm, volume, snapshot, path)
        except OntapError as err:
            # per-item results (docs/dev/faults.md#restore-partial): the caller rolls back what was overwritten
            err.result = {"changed": bool(restored), "restored": restored,
                          "failed_items": [entry(kind, path, dest, error=str(err))],
                          "not_attempted": [entry(k, p, d) for k, p, d in items[idx + 1:]]}
            raise
        restored.append(entry(kind, path, dest, method=method))
    return {"changed": bool(restored), "restored": restored, "failed_items": [], "not_attempted": []}


def restore_whole_volume(client: Ontap, svm: str, volume: str, snapshot: str, force: bool = False,
                         check_mode: bool = False) -> Dict[str, Any]:
    require_snapshot(client, svm, volume, snapshot)
    snaps = client.list_snapshots(svm, volume)
    names = [s.get("name") for s in snaps]
    newer = names[names.index(snapshot) + 1:] if snapshot in names else []
    rels = []
    try:
        rels = client.list_snapmirror([(svm, volume)])
    except OntapError:
        pass
    warnings = ["Volume restore of %s:%s on %s reverts every file in the volume to snapshot %s; all changes since "
                "then are lost%s." % (svm, volume, client.hostname, snapshot,
                                      " and the %d newer snapshot(s) are deleted (%s)" % (len(newer), ", ".join(newer))
                                      if newer else "")]
    if rels:
        warnings.append("Volume %s:%s is the source of SnapMirror/SnapVault relationship(s) %s: update or resync them "
                        "after the restore." % (svm, volume, ", ".join(r["destination"]["path"] for r in rels)))
    if not check_mode:
        try:
            client.restore_volume(svm, volume, snapshot, force=force)
        except OntapError as exc:
            if newer and not force and exc.code in ("8", "13038"):
                exc.with_hint("%d newer snapshot(s) exist (%s); a volume restore deletes them: set force: true to "
                              "restore anyway, or restore single files instead." % (len(newer), ", ".join(newer)))
            raise
    return {"changed": True, "restored": [{"type": "volume", "path": "/", "method": "check_mode" if check_mode
                                           else "volume_snaprestore"}],
            "deleted_snapshots": newer, "warnings": warnings}


# ---- snapmirror ---------------------------------------------------------------------------------------------
def relationship_status(rel: RelationshipRecord) -> Dict[str, Any]:
    """dpstatus-like view of one relationship."""
    ptype = rel.get("policy_type") or ""
    return {"uuid": rel.get("uuid"), "source": rel["source"]["path"], "destination": rel["destination"]["path"],
            "type": "vault" if "vault" in ptype else "mirror", "policy": rel.get("policy"),
            "policy_type": rel.get("policy_type"), "state": rel.get("state"), "healthy": rel.get("healthy"),
            "unhealthy_reason": rel.get("unhealthy_reason"), "lag_time": rel.get("lag_time"),
            "transfer_state": rel.get("transfer_state"), "last_transfer_end": rel.get("last_transfer_end"),
            "last_transfer_end_iso": epoch_to_iso(rel.get("last_transfer_end")), "labels": rel.get("labels") or [],
            "held_by": rel["destination"].get("cluster")}


def snapmirror_info(client: Ontap, volumes: List[VolumeRef]) -> Dict[str, Any]:
    rels = client.list_snapmirror(volumes)
    sources = set(r["source"]["path"] for r in rels)
    without = [_ref(*v) for v in volumes if _ref(*v) not in sources]
    status = [relationship_status(r) for r in rels]
    return {"relationships": status, "volumes_without_relationships": without,
            "healthy": all(s["healthy"] is not False for s in status)}


def relationship_kinds(status: dict) -> List[str]:
    """What a relationship does: a mirror-vault policy both mirrors and vaults."""
    if "mirror_vault" in (status.get("policy_type") or ""):
        return ["mirror", "vault"]
    return [status["type"]]


def snapmirror_update(client: Ontap, volumes: List[VolumeRef], snapshot: Optional[str] = None,
                      label: Optional[str] = None, wait: bool = True, wait_timeout: int = 300,
                      check_mode: bool = False, types: Optional[List[str]] = None) -> Dict[str, Any]:
    """Transfer on the relationships of VOLUMES; TYPES (mirror, vault) limits which kinds are updated."""
    rels = client.list_snapmirror(volumes)
    sources = set(r["source"]["path"] for r in rels)
    without = [_ref(*v) for v in volumes if _ref(*v) not in sources]
    updated, not_updated = [], []
    for rel in rels:
        status = relationship_status(rel)
        if status["held_by"]:
            # Its destination cluster owns it: only a controller of that cluster can start its transfer.
            status["reason"] = ("held by cluster %s (the destination's), whose controller starts its transfers: "
                                "the backup role asks the other controllers of ontap_controllers (add one of cluster "
                                "%s there), or let the relationship's schedule update it" % ((status["held_by"],) * 2))
            not_updated.append(status)
            continue
        if types is not None and not set(relationship_kinds(status)) & set(types):
            status["reason"] = "a %s relationship; only %s asked for" % (status["type"], " and ".join(types))
            not_updated.append(status)
            continue
        if label and status["type"] == "vault" and status["labels"] and label not in status["labels"]:
            status["reason"] = "policy %s has no rule for label %s" % (status["policy"], label)
            not_updated.append(status)
            continue
        if check_mode:
            updated.append(status)
            continue
        try:
            new = client.update_snapmirror(rel, snapshot=snapshot, wait=wait, timeout=wait_timeout)
        except OntapError as exc:
            exc.operation = "update SnapMirror relationship %s -> %s" % (status["source"], status["destination"])
            exc.with_hint("Check it with 'snapmirror show -destination-path %s' on the destination cluster; resync "
                          "it if it is broken, then run the update again." % status["destination"], keep=True)
            raise
        updated.append(relationship_status(new))
    return {"changed": bool(updated), "updated": updated, "not_updated": not_updated, "volumes_without_relationships": without}
