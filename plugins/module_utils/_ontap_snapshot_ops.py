# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Snapshot-set logic shared by the ontap_* modules and vm_backup: ensure/delete a set, prune, info,
restore and SnapMirror status. Works on any Ontap client (REST or ZAPI); check mode never mutates.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import Ontap, VolumeRef, epoch_to_iso
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError
from ansible_collections.kvmsnap.core.plugins.module_utils._retention import select_prunable
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import (
    DEFAULT_PREFIX,
    has_marker,
    parse_comment,
)


def _ref(svm: str, vol: str) -> str:
    return "%s:%s" % (svm, vol)


# ---- create / delete -------------------------------------------------------------------------------
def ensure_snapshot_set(client: Ontap, volumes: List[VolumeRef], name: str, comment: str,
                        snapmirror_label: Optional[str] = None, check_mode: bool = False) -> Dict[str, Any]:
    """Make sure snapshot NAME exists on every volume, created by us as one consistent set.

    Present everywhere with our metadata → changed False. Present on some volumes only, or without our
    metadata → OntapError (never overwritten). Returns {changed, method, snapshots, msg}.
    """
    what = "create snapshot %s on %s" % (name, ", ".join(_ref(*v) for v in volumes))
    existing: Dict[VolumeRef, Optional[dict]] = {}
    for svm, vol in volumes:
        existing[(svm, vol)] = client.get_snapshot(svm, vol, name)
    present = [v for v, s in existing.items() if s]
    if present:
        foreign = [v for v in present if not has_marker(existing[v] or {})]
        if foreign:
            raise client.error(
                "snapshot %s already exists on %s but was not created by kvmsnap.core (no kvmsnap metadata in its "
                "comment)" % (name, ", ".join(_ref(*v) for v in foreign)), what, code="13020",
                hint="It is never overwritten: choose another name, or delete that snapshot first if it is not needed.")
        missing = [v for v in volumes if not existing[v]]
        if missing:
            raise client.error(
                "snapshot %s exists on %s but not on %s, so it is not one consistent set" % (
                    name, ", ".join(_ref(*v) for v in present), ", ".join(_ref(*v) for v in missing)), what,
                code="13020", hint="Delete the partial set (state: absent) or choose another name; an existing "
                                   "snapshot is never overwritten.")
        snaps = [_brief(existing[v] or {}, v) for v in volumes]
        return {"changed": False, "method": None, "snapshots": snaps,
                "msg": "snapshot %s already exists on all %d volume(s)" % (name, len(volumes))}
    if check_mode:
        snaps = [{"svm": s, "volume": v, "name": name, "uuid": None, "create_time": None} for s, v in volumes]
        method = client.predict_method(volumes)
        return {"changed": True, "method": method, "snapshots": snaps,
                "msg": "would create snapshot %s on %d volume(s)" % (name, len(volumes))}
    result = client.create_snapshot_set(volumes, name, comment=comment, snapmirror_label=snapmirror_label,
                                        precheck=False)  # checked just above
    return {"changed": True, "method": result["method"], "snapshots": result["snapshots"],
            "msg": "created snapshot %s on %d volume(s) (%s)" % (name, len(volumes), result["method"])}


def _brief(snap: dict, ref: VolumeRef) -> dict:
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


# ---- prune -----------------------------------------------------------------------------------------------
def prune(client: Ontap, volumes: List[VolumeRef], policy: str, keep: int, prefix: str = DEFAULT_PREFIX,
          check_mode: bool = False, exclude: Optional[List[str]] = None) -> Dict[str, Any]:
    """Delete our snapshots of POLICY beyond KEEP per volume (never the newest good one, never foreign ones).

    Busy or owned snapshots are skipped with a warning. Returns {changed, pruned, skipped, warnings}.
    """
    pruned: List[dict] = []
    skipped: List[dict] = []
    warnings: List[str] = []
    for svm, vol in volumes:
        snaps = client.list_snapshots(svm, vol)
        for snap in select_prunable(snaps, policy, keep, prefix=prefix, exclude=exclude):
            item = {"svm": svm, "volume": vol, "name": snap.get("name"), "create_time": snap.get("create_time")}
            reason = None
            if snap.get("owners"):
                reason = "owned by %s" % ", ".join(snap["owners"])
            elif snap.get("busy"):
                reason = "busy"
            elif not check_mode:
                try:
                    client.delete_snapshot(svm, vol, snap["name"])
                except OntapError as exc:
                    if not exc.is_busy:
                        raise
                    reason = "busy: %s" % exc.message
            if reason:
                item["reason"] = reason
                skipped.append(item)
                warnings.append("%s: snapshot %s on %s:%s not pruned (%s); it will be tried again at the next prune."
                                % (client.hostname, snap.get("name"), svm, vol, reason))
            else:
                pruned.append(item)
    return {"changed": bool(pruned), "pruned": pruned, "skipped": skipped, "warnings": warnings}


# ---- info --------------------------------------------------------------------------------------------------
def snapshot_record(snap: dict) -> dict:
    return {"svm": snap.get("svm"), "volume": snap.get("volume"), "name": snap.get("name"), "uuid": snap.get("uuid"),
            "create_time": snap.get("create_time"), "create_time_iso": epoch_to_iso(snap.get("create_time")),
            "snapmirror_label": snap.get("snapmirror_label"), "comment": snap.get("comment"),
            "state": snap.get("state"), "busy": bool(snap.get("busy")), "owners": list(snap.get("owners") or []),
            "kvmsnap": parse_comment(snap.get("comment"))}


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


# ---- restore -------------------------------------------------------------------------------------------------
def require_snapshot(client: Ontap, svm: str, volume: str, snapshot: str) -> dict:
    snap = client.get_snapshot(svm, volume, snapshot)
    if not snap:
        raise client.not_found("snapshot %s not found on volume %s:%s" % (snapshot, svm, volume),
                               "restore from snapshot %s" % snapshot,
                               hint="List the snapshots with kvmsnap.core.ontap_snapshot_info and give an existing one.")
    return snap


def restore_items(client: Ontap, svm: str, volume: str, snapshot: str, files: List[str], luns: List[str],
                  check_mode: bool = False) -> Dict[str, Any]:
    require_snapshot(client, svm, volume, snapshot)
    restored = []
    if luns:
        known = set(lun.get("path") for lun in client.list_luns(svm, volume))
        missing = [lun for lun in luns if lun not in known]
        if missing:
            raise client.not_found("LUN(s) %s not found in volume %s:%s" % (", ".join(missing), svm, volume),
                                   "restore LUNs from snapshot %s" % snapshot)
    for path in files:
        method = "check_mode" if check_mode else client.restore_file(svm, volume, snapshot, path)
        restored.append({"type": "file", "path": path, "method": method})
    for lun in luns:
        method = "check_mode" if check_mode else client.restore_lun(svm, volume, snapshot, lun)
        restored.append({"type": "lun", "path": lun, "method": method})
    return {"changed": bool(restored), "restored": restored}


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
                exc._hint = ("%d newer snapshot(s) exist (%s); a volume restore deletes them: set force: true to "  # pylint: disable=protected-access
                             "restore anyway, or restore single files instead." % (len(newer), ", ".join(newer)))
            raise
    return {"changed": True, "restored": [{"type": "volume", "path": "/", "method": "check_mode" if check_mode
                                           else "volume_snaprestore"}],
            "deleted_snapshots": newer, "warnings": warnings}


# ---- snapmirror ---------------------------------------------------------------------------------------------
def relationship_status(rel: dict) -> dict:
    """dpstatus-like view of one relationship."""
    ptype = rel.get("policy_type") or ""
    return {"uuid": rel.get("uuid"), "source": rel["source"]["path"], "destination": rel["destination"]["path"],
            "type": "vault" if "vault" in ptype else "mirror", "policy": rel.get("policy"),
            "policy_type": rel.get("policy_type"), "state": rel.get("state"), "healthy": rel.get("healthy"),
            "unhealthy_reason": rel.get("unhealthy_reason"), "lag_time": rel.get("lag_time"),
            "transfer_state": rel.get("transfer_state"), "last_transfer_end": rel.get("last_transfer_end"),
            "last_transfer_end_iso": epoch_to_iso(rel.get("last_transfer_end")), "labels": rel.get("labels") or []}


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
    updated, skipped = [], []
    for rel in rels:
        status = relationship_status(rel)
        if types is not None and not set(relationship_kinds(status)) & set(types):
            status["reason"] = "a %s relationship; only %s asked for" % (status["type"], " and ".join(types))
            skipped.append(status)
            continue
        if label and status["type"] == "vault" and status["labels"] and label not in status["labels"]:
            status["reason"] = "policy %s has no rule for label %s" % (status["policy"], label)
            skipped.append(status)
            continue
        if check_mode:
            updated.append(status)
            continue
        try:
            new = client.update_snapmirror(rel, snapshot=snapshot, wait=wait, timeout=wait_timeout)
        except OntapError as exc:
            exc.operation = "update SnapMirror relationship %s -> %s" % (status["source"], status["destination"])
            if not exc._hint:  # pylint: disable=protected-access
                exc._hint = ("Check it with 'snapmirror show -destination-path %s' on the destination cluster; "  # pylint: disable=protected-access
                             "resync it if it is broken, then run the update again." % status["destination"])
            raise
        updated.append(relationship_status(new))
    return {"changed": bool(updated), "updated": updated, "skipped": skipped, "volumes_without_relationships": without}
