# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Restore files of a volume from a snapshot held on one of its SnapMirror/SnapVault destinations (the copy),
as ONTAP does it: a restore relationship copy -> volume, transfers of at most 8 files each, then the
relationship deleted (also when a transfer failed). Everything is checked before the first transfer.
When the volume itself is gone: what the user does to bring up a copy (no automatic failover).

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_interface import Ontap
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_snapshot_ops import relationship_status

# ONTAP restores at most this many files or LUNs per restore transfer
FILES_PER_TRANSFER = 8


def _batches(files: List[str]) -> List[List[str]]:
    return [files[i:i + FILES_PER_TRANSFER] for i in range(0, len(files), FILES_PER_TRANSFER)]


def check_copy(client: Ontap, svm: str, volume: str, source: Tuple[str, str], snapshot: str,
               files: List[str], copy_client: Optional[Ontap] = None) -> None:
    """SOURCE must be a SnapMirror/SnapVault destination of SVM:VOLUME holding SNAPSHOT with every file of FILES,
    and no restore into SVM:VOLUME may be under way; OntapError naming what to do otherwise. COPY_CLIENT: the
    controller of the cluster that holds SOURCE when that is another cluster (the copy is read there)."""
    primary = "%s:%s" % (svm, volume)
    copy = "%s:%s" % source
    op = "restore %s from %s, snapshot %s" % (primary, copy, snapshot)
    rels = client.list_snapmirror([(svm, volume)])
    destinations = [r["destination"]["path"] for r in rels]
    held_by = [r["destination"].get("cluster") for r in rels if r["destination"]["path"] == copy]
    if held_by and held_by[0] and copy_client is None:
        raise client.error(
            "%s is held by cluster %s, not by %s: its snapshot and files are read on a controller of that cluster"
            % (copy, held_by[0], client.hostname), op,
            hint="Give source_controller (the connection of a controller of cluster %s; the restore role takes it "
                 "from the inventory's ontap_controllers)." % held_by[0])
    reader = copy_client or client
    if copy not in destinations:
        raise client.error(
            "%s is not a SnapMirror/SnapVault destination of %s (its destinations: %s)"
            % (copy, primary, ", ".join(destinations) or "none"), op,
            hint="Give as source one of the volume's destinations; kvmsnap.core.ontap_snapshot_info with "
                 "copies: true lists where each backup lives.")
    if reader.get_snapshot(source[0], source[1], snapshot) is None:
        raise reader.not_found("snapshot %s not found on %s (controller %s)" % (snapshot, copy, reader.hostname), op,
                               hint="List the copies of the backups with kvmsnap.core.ontap_snapshot_info "
                                    "(copies: true) and give a snapshot the copy holds.")
    missing = [f for f in files if reader.snapshot_file_info(source[0], source[1], snapshot, f) is None]
    if missing:
        raise reader.not_found("%s not in snapshot %s of %s" % (", ".join(missing), snapshot, copy), op,
                               hint="Restore only files the backup holds.")
    running = client.restore_relationships(primary)
    if running:
        raise client.error(
            "a restore relationship into %s exists already (from %s)" % (
                primary, ", ".join(str(r["source"]) for r in running)), op,
            hint="Another restore may be running: check it with 'snapmirror show -destination-path %s -type RST'; "
                 "once it has ended, delete it with 'snapmirror delete -destination-path %s' and run again."
                 % (primary, primary))


def restore_from_copy(client: Ontap, svm: str, volume: str, source: Tuple[str, str], snapshot: str,
                      files: List[str], check_mode: bool = False, timeout: int = 300,
                      destination_dir: Optional[str] = None, copy_client: Optional[Ontap] = None) -> Dict[str, Any]:
    """Restore FILES ('/'-prefixed paths inside the volume) of SVM:VOLUME from SNAPSHOT on the copy SOURCE
    (svm, volume), in place or below DESTINATION_DIR. Per-item results as restore_items gives them, also on
    failure. The restore relationship and its transfers are made on CLIENT (the volume's cluster) also when the
    copy lives on another cluster (COPY_CLIENT, where the copy is checked)."""
    prefix = (destination_dir or "").rstrip("/")
    check_copy(client, svm, volume, source, snapshot, files, copy_client)
    copy = "%s:%s" % source
    if check_mode:
        return {"changed": True, "restored": [{"type": "file", "path": f, "method": "check_mode"} for f in files],
                "failed_items": [], "not_attempted": [], "source": copy, "warnings": []}
    primary = "%s:%s" % (svm, volume)
    restored: List[Dict[str, Any]] = []
    warnings: List[str] = []
    rel_uuid = client.create_restore_relationship(copy, primary)
    failed: Optional[OntapError] = None
    try:
        batches = _batches(files)
        for idx, batch in enumerate(batches):
            try:
                client.restore_transfer(rel_uuid, snapshot, [(f, prefix + f) for f in batch], timeout=timeout)
            except OntapError as err:
                # per-item results (docs/dev/faults.md#restore-partial): the caller rolls back what was overwritten
                err.result = {"changed": bool(restored), "restored": restored, "source": copy,
                              "failed_items": [{"type": "file", "path": f, "error": str(err)} for f in batch],
                              "not_attempted": [{"type": "file", "path": f}
                                                for later in batches[idx + 1:] for f in later]}
                failed = err
                raise
            restored.extend({"type": "file", "path": prefix + f, "method": "snapmirror_restore"} for f in batch)
    finally:
        try:
            client.delete_relationship(rel_uuid)
        except OntapError as exc:
            warnings.append("The restore relationship %s -> %s on %s was not deleted (%s): delete it with "
                            "'snapmirror delete -destination-path %s'." % (copy, primary, client.hostname, exc,
                                                                           primary))
            if failed is not None and isinstance(failed.result, dict):
                failed.result["warnings"] = list(warnings)
    return {"changed": True, "restored": restored, "failed_items": [], "not_attempted": [], "source": copy,
            "warnings": warnings}


def lost_primary_guidance(primary: str, controller: str, destinations: List[Dict[str, Any]]) -> str:
    """What to do when the volume PRIMARY (svm:volume) on CONTROLLER is gone: bring up one of its SnapMirror/
    SnapVault DESTINATIONS ([{location, kind}]) by hand - nothing fails over automatically."""
    if not destinations:
        return ("Volume %s is not on %s (deleted, renamed or offline?) and the controller lists no SnapMirror/SnapVault "
                "destination of it. Bring the volume back (or restore it from another copy), then run again."
                % (primary, controller))
    first = destinations[0]["location"]
    svm, _sep, vol = first.partition(":")
    where = ", ".join("%s (%s)" % (d["location"], d.get("kind") or "mirror") for d in destinations)
    return ("Volume %s is not on %s (deleted, renamed or offline?). Its backups live on: %s. kvmsnap does not fail over "
            "by itself; to run the VMs from a copy: (1) on the destination's cluster, 'snapmirror break "
            "-destination-path %s' (the copy becomes writable; later updates from %s stop); (2) 'volume mount -vserver "
            "%s -volume %s -junction-path /%s' and export it to the KVM hosts; (3) mount it at the datastore path on "
            "each KVM host and point kvmsnap_datastores at %s (controller, svm %s, volume %s); (4) run the discover "
            "playbook, then restore with kvmsnap_restore_snapshot naming a snapshot the copy holds (its snapshots are "
            "the volume's own there). See docs/restore.md#lost-primary-volume."
            % (primary, controller, where, first, primary, svm, vol, vol, first, svm, vol))


def lost_primary_hint(client: Ontap, volumes: List[Tuple[str, str]]) -> Optional[str]:
    """The guidance for the first of VOLUMES this controller does not have, or None (all there, or unreadable)."""
    try:
        present = {(v.get("svm"), v["name"]) for v in client.list_volumes()}
    except OntapError:
        return None
    lost = [v for v in volumes if v not in present]
    if not lost:
        return None
    try:
        rels = client.list_snapmirror(lost)
    except OntapError:
        rels = []
    primary = "%s:%s" % lost[0]
    dests = [{"location": r["destination"]["path"], "kind": relationship_status(r)["type"]}
             for r in rels if r["source"]["path"] == primary]
    return lost_primary_guidance(primary, client.hostname, dests)
