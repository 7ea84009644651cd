"""Operations on the model, shared by REST and ZAPI. Callers hold state.lock; every
operation raises SimError (mapped to codes by the front end) and saves the state."""

from __future__ import annotations

import os
import re
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError, parse_size
from .errors import SimError
from .state import State, new_uuid
from .storage import StorageError

# cg-start fence timeouts (ZAPI docs); user-timeout must lie between "urgent" and 120 s.
CG_TIMEOUTS = {"urgent": 5.0, "medium": 7.0, "relaxed": 20.0}
CG_USER_TIMEOUT_MAX = 120
_BAD_NAME = re.compile(r"[/\s,*?|!<>\"']")


def check_snapshot_name(name: Any, target: str = "name") -> str:
    if not isinstance(name, str) or not name:
        raise SimError("missing", f'Missing value for "{target}".', target=target)
    if len(name) > 255 or _BAD_NAME.search(name) or name.startswith("."):
        raise SimError("invalid", f'Invalid value "{name}" for Snapshot copy name.', target=target)
    return name


@dataclass
class End:
    """A relationship's end: a volume of this cluster (root None) or of a peer (its volumes/ directory)."""
    vol: dict[str, Any]
    svm: str
    cluster: str | None = None
    root: Path | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.svm, self.vol["name"])

    @property
    def path(self) -> str:
        return f"{self.svm}:{self.vol['name']}"


class Ops:
    def __init__(self, state: State) -> None:
        self.st = state
        self.storage = state.storage
        # single-file restores still running in the background (ZAPI), for snapshot-restore-file-info
        self.sfsr_in_progress = 0
        # fault: (svm, volume) -> paths that the next snapshots of that volume do not hold (POST /_sim/snapshot-omit)
        self.omit: dict[tuple[str, str], list[str]] = {}

    def _storage(self, fn, *args) -> None:
        try:
            fn(*args)
        except (StorageError, OSError) as exc:
            raise SimError("internal", f"Storage operation failed: {exc}") from exc

    # -- snapshots ---------------------------------------------------------------------------
    def create_snapshots(self, vols: list[dict[str, Any]], name: str, comment: str | None = None,
                         label: str | None = None, exists_kind: str = "snapshot_exists",
                         cleanup: bool = True) -> list[dict[str, Any]]:
        """One snapshot NAME on every volume with one create_time (all or nothing)."""
        check_snapshot_name(name)
        for vol in vols:
            if any(s["name"] == name for s in vol["snapshots"]):
                raise SimError(exists_kind, f'Snapshot copy "{name}" of volume "{vol["name"]}" on Vserver '
                                            f'"{self.st.svm_name(vol["svm"])}" already exists.', target="name")
            if vol["type"] == "dp":
                raise SimError("snapshot_not_allowed",
                               f'Cannot create Snapshot copy "{name}": volume "{vol["name"]}" is a read-only '
                               "data protection (DP) volume.", target="volume")
        now = int(time.time())
        made: list[tuple[dict[str, Any], dict[str, Any]]] = []
        try:
            for vol in vols:
                prev = vol["snapshots"][-1] if vol["snapshots"] else None
                self._storage(self.storage.create_snapshot, *self.st.vol_key(vol), name,
                              prev["name"] if prev else None, prev["create_time"] if prev else None)
                for rel in self.omit.get(self.st.vol_key(vol), []):
                    self._storage(self.storage.drop_from_snapshot, *self.st.vol_key(vol), name, rel)
                snap = {"uuid": new_uuid(), "name": name, "create_time": now, "comment": comment,
                        "snapmirror_label": label, "owners": []}
                vol["snapshots"].append(snap)
                made.append((vol, snap))
        except SimError:
            if cleanup:
                for vol, snap in made:
                    self.delete_snapshot(vol, snap, save=False)
            raise
        finally:
            self.st.save()
        return [snap for _vol, snap in made]

    def delete_snapshot(self, vol: dict[str, Any], snap: dict[str, Any], ignore_owners: bool = False,
                        save: bool = True) -> None:
        if snap.get("owners") and not ignore_owners:
            raise SimError("busy", f'Snapshot copy "{snap["name"]}" of volume "{vol["name"]}" on Vserver '
                                   f'"{self.st.svm_name(vol["svm"])}" is busy (owners: '
                                   f'{", ".join(snap["owners"])}). Delete is not allowed.')
        self._storage(self.storage.delete_snapshot, *self.st.vol_key(vol), snap["name"])
        vol["snapshots"] = [s for s in vol["snapshots"] if s["uuid"] != snap["uuid"]]
        if save:
            self.st.save()

    def modify_snapshot(self, vol: dict[str, Any], snap: dict[str, Any], changes: dict[str, Any]) -> None:
        new = changes.get("name")
        if new is not None and new != snap["name"]:
            check_snapshot_name(new)
            if any(s["name"] == new for s in vol["snapshots"]):
                raise SimError("snapshot_exists", f'Snapshot copy "{new}" of volume "{vol["name"]}" already exists.',
                               target="name")
            self._storage(self.storage.rename_snapshot, *self.st.vol_key(vol), snap["name"], new)
            snap["name"] = new
        for key in ("comment", "snapmirror_label"):
            if key in changes:
                snap[key] = changes[key] or None
        self.st.save()

    def resize_volume(self, vol: dict[str, Any], size: Any) -> int:
        """Set the volume's size: bytes, or "+N"/"-N" with an optional k/m/g/t unit (ZAPI new-size). The
        sim keeps no aggregate limit; it refuses a size below what the active file system uses."""
        text = str(size).strip()
        sign = text[:1] if text[:1] in "+-" else ""
        try:
            amount = parse_size(text[len(sign):])
        except ConfigError:
            raise SimError("invalid", f'Invalid value "{size}" for "size".', target="size") from None
        new = vol["size"] + amount if sign == "+" else vol["size"] - amount if sign == "-" else amount
        used = self.storage.used_bytes(*self.st.vol_key(vol))
        if new < max(used, 20 * 1024 * 1024):
            raise SimError("invalid", f'Unable to set volume attribute "size" for volume "{vol["name"]}". '
                                      f"Reason: the new size {new} is too small.", target="size")
        vol["size"] = new
        self.st.save()
        return new

    def set_owners(self, vol: dict[str, Any], snap: dict[str, Any], owners: list[str]) -> None:
        snap["owners"] = list(owners)
        self.st.save()

    # -- restores ----------------------------------------------------------------------------
    def restore_volume(self, vol: dict[str, Any], snap: dict[str, Any], force: bool = False) -> None:
        if vol["type"] == "dp":
            raise SimError("restore_refused", f'Cannot restore volume "{vol["name"]}": it is a SnapMirror '
                                              "destination (mirror); break the relationship first.")
        idx = vol["snapshots"].index(snap)
        newer = vol["snapshots"][idx + 1:]
        if newer and not force:
            raise SimError("newer_snapshots",
                           f'Cannot restore volume "{vol["name"]}" to Snapshot copy "{snap["name"]}": '
                           f"{len(newer)} newer Snapshot copies exist ({', '.join(s['name'] for s in newer)}). "
                           "Restoring deletes them; use force to proceed.")
        busy = [s["name"] for s in newer if s.get("owners")]
        if busy:
            raise SimError("busy", f'Cannot restore volume "{vol["name"]}": newer Snapshot copies are busy: '
                                   f"{', '.join(busy)}.")
        for s in newer:
            self.delete_snapshot(vol, s, save=False)
        self._storage(self.storage.restore_volume, *self.st.vol_key(vol), snap["name"])
        self.st.save()

    def restore_file(self, vol: dict[str, Any], snap: dict[str, Any], path: str,
                     restore_path: str | None = None, background: float = 0.0) -> None:
        """Single-file restore. BACKGROUND > 0: as ZAPI snapshot-restore-file does on ONTAP, the call returns
        at once and the data lands BACKGROUND seconds later; meanwhile the source snapshot is busy (owner
        "sfsr") and snapshot-restore-file-info counts the restore as in progress."""
        rel, dest = self._check_restore_file(vol, snap, path, restore_path)
        if background <= 0:
            self._storage(self.storage.restore_file, *self.st.vol_key(vol), snap["name"], rel, dest)
            return
        snap["owners"] = list(snap.get("owners") or []) + ["sfsr"]
        self.sfsr_in_progress += 1

        def finish() -> None:
            time.sleep(background)
            with self.st.lock:
                try:
                    self._storage(self.storage.restore_file, *self.st.vol_key(vol), snap["name"], rel, dest)
                finally:
                    owners = list(snap.get("owners") or [])
                    if "sfsr" in owners:
                        owners.remove("sfsr")
                    snap["owners"] = owners
                    self.sfsr_in_progress -= 1
                    self.st.save()

        threading.Thread(target=finish, name="sim-sfsr", daemon=True).start()

    def file_info(self, vol: dict[str, Any], rel: str) -> dict[str, Any]:
        """Metadata of one path of VOL ('.snapshot/<name>/...' reaches into a snapshot): {name, path, type,
        size}. The type is ONTAP's: "lun" for a LUN's file (in the active file system or in a snapshot),
        else file, directory or symlink (not followed). A missing path: file_not_found."""
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise SimError("invalid", f'Invalid path "{rel}".', target="path")
        svm_name, vname = self.st.vol_key(vol)
        full = self.storage.volume_dir(svm_name, vname).joinpath(*parts)
        try:
            st = os.lstat(full)
        except OSError:
            raise SimError("file_not_found", f'File "/{"/".join(parts)}" does not exist in volume "{vname}".',
                           target="path") from None
        in_vol = parts[2:] if parts[:1] == [".snapshot"] else parts
        if parts[:1] == [".snapshot"] and len(parts) >= 2 and not any(s["name"] == parts[1] for s in vol["snapshots"]):
            raise SimError("file_not_found", f'File "/{"/".join(parts)}" does not exist in volume "{vname}".',
                           target="path")
        luns = {lu["name"] for lu in self.st.doc["luns"].values() if lu["volume"] == vol["uuid"]}
        if stat.S_ISLNK(st.st_mode):
            kind = "symlink"
        elif stat.S_ISDIR(st.st_mode):
            kind = "directory"
        elif "/".join(in_vol) in luns:
            kind = "lun"
        else:
            kind = "file"
        return {"name": parts[-1] if parts else "", "path": "/".join(parts), "type": kind,
                "size": 0 if kind == "directory" else st.st_size}

    def _check_restore_file(self, vol: dict[str, Any] | End, snap: dict[str, Any], path: str,
                            restore_path: str | None) -> tuple[str, str]:
        end = vol if isinstance(vol, End) else End(vol, self.st.svm_name(vol["svm"]))
        vol = end.vol
        if not isinstance(path, str) or not path:
            raise SimError("missing", 'Missing value for "path".', target="path")
        rel = "/" + path.lstrip("/")
        dest = "/" + (restore_path or rel).lstrip("/")
        if ".." in rel.split("/") or ".." in dest.split("/"):
            raise SimError("invalid", f'Invalid path "{path}".', target="path")
        if ".snapshot" in dest.lower().split("/"):
            raise SimError("invalid", f'Invalid restore path "{dest}": Snapshot copies are read-only.',
                           target="restore_path")
        src = self.storage.source_snapshot_dir((*end.key, snap["name"]), end.root) / rel.lstrip("/")
        if not src.exists():
            raise SimError("file_not_found", f'File "{rel}" does not exist in Snapshot copy "{snap["name"]}" '
                                             f'of volume "{vol["name"]}".', target="path")
        if not src.is_file():
            raise SimError("invalid", f'"{rel}" is not a regular file or LUN; only files and LUNs can be '
                                      "restored with a single-file restore.", target="path")
        return rel, dest

    def lun_clone_overwrite(self, lun: dict[str, Any], source: str) -> None:
        vol = self.st.doc["volumes"][lun["volume"]]
        m = re.match(r"^/vol/([^/]+)/\.snapshot/([^/]+)/(.+)$", source or "")
        if not m:
            raise SimError("invalid", f'Invalid clone source "{source}": a Snapshot copy source must be named '
                                      "/vol/<volume>/.snapshot/<snapshot>/<lun>.", target="clone.source.name")
        if m.group(1) != vol["name"]:
            raise SimError("invalid", "The clone source must be in the same volume as the LUN.",
                           target="clone.source.name")
        snap = self.st.find_snapshot(vol, m.group(2))
        self.restore_file(vol, snap, m.group(3), lun["name"])

    # -- consistency groups ------------------------------------------------------------------
    def cg_create(self, svm: dict[str, Any], name: str, vol_names: list[str]) -> dict[str, Any]:
        if not name:
            raise SimError("missing", 'Missing value for "name".', target="name")
        if any(c["name"] == name and c["svm"] == svm["uuid"] for c in self.st.doc["cgs"].values()):
            raise SimError("exists", f'Consistency group "{name}" already exists in SVM "{svm["name"]}".',
                           target="name")
        if not vol_names:
            raise SimError("missing", 'Missing value for "volumes".', target="volumes")
        members = []
        for vn in vol_names:
            vol = self.st.find_volume(svm["name"], vn)
            for cg in self.st.doc["cgs"].values():
                if vol["uuid"] in cg["volumes"]:
                    raise SimError("in_use", f'Volume "{vn}" is already part of consistency group '
                                             f'"{cg["name"]}".', target="volumes.name")
            members.append(vol["uuid"])
        cg = {"uuid": new_uuid(), "name": name, "svm": svm["uuid"], "volumes": members, "snapshots": []}
        self.st.doc["cgs"][cg["uuid"]] = cg
        self.st.save()
        return cg

    def cg_delete(self, cg: dict[str, Any]) -> None:
        # Deleting a CG keeps its volumes and their snapshots.
        self.st.doc["cgs"].pop(cg["uuid"], None)
        self.st.save()

    def cg_snapshot(self, cg: dict[str, Any], name: str, comment: str | None,
                    label: str | None, commit_within: float | None = None) -> dict[str, Any]:
        """One snapshot on every member; COMMIT_WITHIN (s) makes it the REST two-phase "start",
        which a commit must follow in time (see cg_snapshot_commit)."""
        if any(s["name"] == name for s in cg["snapshots"]):
            raise SimError("cg_snapshot_exists", f'Consistency group Snapshot copy "{name}" already exists.',
                           target="name")
        vols = [self.st.doc["volumes"][u] for u in cg["volumes"]]
        snaps = self.create_snapshots(vols, name, comment, label, exists_kind="cg_snapshot_exists")
        rec = {"uuid": new_uuid(), "name": name, "create_time": snaps[0]["create_time"], "comment": comment,
               "snapmirror_label": label, "members": {v["uuid"]: s["uuid"] for v, s in zip(vols, snaps)}}
        if commit_within is not None:
            scale = float(self.st.cfg["options"].get("cg_fence_scale", 1.0))
            rec["commit_deadline"] = time.time() + commit_within * scale
        cg["snapshots"].append(rec)
        self.st.save()
        return rec

    def cg_snapshot_commit(self, cg: dict[str, Any], rec: dict[str, Any]) -> None:
        deadline = rec.get("commit_deadline")
        if deadline is None:
            raise SimError("invalid", f'Consistency group Snapshot copy "{rec["name"]}" was not started with '
                                      '"action=start"; nothing to commit.', target="action")
        if time.time() > deadline:
            self.cg_snapshot_delete(cg, rec)
            raise SimError("cg_failed", f'Failed to commit consistency group Snapshot copy "{rec["name"]}": the '
                                        "action_timeout expired before the commit; the Snapshot copies were deleted.")
        del rec["commit_deadline"]
        self.st.save()

    def cg_snapshot_delete(self, cg: dict[str, Any], rec: dict[str, Any]) -> None:
        for vu, su in rec["members"].items():
            vol = self.st.doc["volumes"].get(vu)
            snap = next((s for s in vol["snapshots"] if s["uuid"] == su), None) if vol else None
            if snap is not None:
                self.delete_snapshot(vol, snap, save=False)
        cg["snapshots"] = [s for s in cg["snapshots"] if s["uuid"] != rec["uuid"]]
        self.st.save()

    # ZAPI two-phase CG: snapshots are taken at cg-start (I/O is fenced until cg-commit); a commit
    # after the fence timeout fails and the snapshots are discarded.
    def cg_start(self, vols: list[dict[str, Any]], name: str, timeout: str | None, label: str | None,
                 user_timeout: int | None = None) -> str:
        if timeout is not None and user_timeout is not None:
            raise SimError("invalid", "Specify either timeout or user-timeout, not both.")
        if timeout is not None and timeout not in CG_TIMEOUTS:
            raise SimError("invalid", f'Invalid value "{timeout}" for "timeout": urgent, medium or relaxed.')
        if user_timeout is not None and not CG_TIMEOUTS["urgent"] <= user_timeout <= CG_USER_TIMEOUT_MAX:
            raise SimError("invalid", f"user-timeout must be between {int(CG_TIMEOUTS['urgent'])} and "
                                      f"{CG_USER_TIMEOUT_MAX} seconds.")
        snaps = self.create_snapshots(vols, name, None, label)
        self.st.doc["counters"]["cg_id"] += 1
        cg_id = str(self.st.doc["counters"]["cg_id"])
        secs = float(user_timeout) if user_timeout is not None else CG_TIMEOUTS[timeout or "medium"]
        # options.cg_fence_scale shortens the fence for fast tests of the expiry path.
        secs *= float(self.st.cfg["options"].get("cg_fence_scale", 1.0))
        self.st.doc["cg_pending"][cg_id] = {"deadline": time.time() + secs, "name": name,
                                            "members": [[v["uuid"], s["uuid"]] for v, s in zip(vols, snaps)]}
        self.st.save()
        return cg_id

    def cg_commit(self, cg_id: str) -> None:
        pending = self.st.doc["cg_pending"].pop(str(cg_id), None)
        if pending is None:
            raise SimError("cg_failed", f"Invalid or expired cg-id {cg_id}.")
        if time.time() > pending["deadline"]:
            for vu, su in pending["members"]:
                vol = self.st.doc["volumes"].get(vu)
                snap = next((s for s in vol["snapshots"] if s["uuid"] == su), None) if vol else None
                if snap is not None:
                    self.delete_snapshot(vol, snap, save=False)
            self.st.save()
            raise SimError("cg_failed", f'Failed to commit CG Snapshot copy "{pending["name"]}" (cg-id {cg_id}): '
                                        "the write fence timed out before cg-commit; the Snapshot copies "
                                        "were deleted.")
        self.st.save()

    # -- SnapMirror ----------------------------------------------------------------------------
    def transfer(self, rel: dict[str, Any], source_snapshot: str | None = None,
                 xfer_uuid: str | None = None) -> dict[str, Any]:
        if rel["state"] == "broken_off":
            raise SimError("transfer_failed", "Transfer failed: the relationship is broken off; resync it first.")
        end = self.source_end(rel)
        src = end.vol
        dst = self.st.doc["volumes"][rel["destination"]]
        policy = self.st.doc["policies"][rel["policy"]]
        labels = {r["label"] for r in policy.get("rules") or []}
        if source_snapshot:
            cands = [self.end_snapshot(end, source_snapshot)]
        elif policy["type"] == "async":
            cands = list(src["snapshots"])
        else:
            cands = [s for s in src["snapshots"] if s.get("snapmirror_label") in labels]
        have = {s["name"] for s in dst["snapshots"]}
        new = [s for s in cands if s["name"] not in have]
        for snap in new:
            self._storage(self.storage.copy_snapshot, (*end.key, snap["name"]),
                          (*self.st.vol_key(dst), snap["name"]), end.root)
            dst["snapshots"].append({"uuid": new_uuid(), "name": snap["name"], "create_time": snap["create_time"],
                                     "comment": snap.get("comment"), "snapmirror_label": snap.get("snapmirror_label"),
                                     "owners": []})
        dst["snapshots"].sort(key=lambda s: s["create_time"])
        if policy["type"] == "async" and not source_snapshot:
            # A mirror holds exactly the source's snapshots.
            src_names = {s["name"] for s in src["snapshots"]}
            for snap in [s for s in dst["snapshots"] if s["name"] not in src_names]:
                self.delete_snapshot(dst, snap, ignore_owners=True, save=False)
        else:
            for rule in policy.get("rules") or []:
                kept = [s for s in dst["snapshots"] if s.get("snapmirror_label") == rule["label"]]
                for snap in kept[:-int(rule.get("count", 7))] if int(rule.get("count", 7)) > 0 else kept:
                    self.delete_snapshot(dst, snap, ignore_owners=True, save=False)
        if new:
            # The destination's active file system follows the newest transferred snapshot.
            newest = max(new, key=lambda s: s["create_time"])
            self._storage(self.storage.restore_volume, *self.st.vol_key(dst), newest["name"])
        now = time.time()
        xfer = {"uuid": xfer_uuid or new_uuid(), "state": "success", "end_time": now,
                "snapshots": [s["name"] for s in new], "bytes_transferred": 0}
        rel["transfers"] = (rel.get("transfers") or [])[-19:] + [xfer]
        rel.update(state="snapmirrored", healthy=True, unhealthy_reason=None, last_transfer_time=now)
        self.st.save()
        return xfer

    # -- SnapMirror restore: files of a destination's snapshot back into a read-write volume ----------------
    def endpoint(self, path: Any, target: str) -> dict[str, Any]:
        if not isinstance(path, str) or not path:
            raise SimError("missing", f'Missing value for "{target}".', target=target)
        svm_name, sep, vol_name = path.partition(":")
        if not sep or not svm_name or not vol_name:
            raise SimError("invalid", f'Invalid value "{path}" for "{target}": expected "<svm>:<volume>".',
                           target=target)
        self.st.find_svm(svm_name)
        return self.st.find_volume(svm_name, vol_name)

    # -- the source end of a relationship, on this cluster or on a peer ----------------------------------------
    def source_end(self, rel: dict[str, Any]) -> End:
        remote = rel.get("source_remote")
        if not remote:
            src = self.st.doc["volumes"][rel["source"]]
            return End(src, self.st.svm_name(src["svm"]))
        view = self.st.peers.view(remote["cluster"])
        vol = view.find_volume(remote["svm"], remote["volume"])
        if vol is None:
            raise SimError("transfer_failed", f'Source volume "{remote["svm"]}:{remote["volume"]}" on cluster '
                                              f'"{remote["cluster"]}" does not exist.')
        return End(vol, remote["svm"], remote["cluster"], view.data_dir / "volumes")

    def end_snapshot(self, end: End, name: str) -> dict[str, Any]:
        if end.root is None:
            return self.st.find_snapshot(end.vol, name)
        snap = next((s for s in end.vol["snapshots"] if s["name"] == name), None)
        if snap is None:
            raise SimError("snapshot_not_found", f'Snapshot copy "{name}" of volume "{end.vol["name"]}" on Vserver '
                                                 f'"{end.svm}" (cluster "{end.cluster}") does not exist.',
                           target="name")
        return snap

    def source_endpoint(self, path: Any, destination: dict[str, Any], cluster: Any = None) -> End:
        """The source of a relationship created on this cluster (the destination's): a local volume, or one of a
        peer cluster whose SVM is peered with the destination's SVM (ONTAP refuses an unpeered SVM)."""
        if not isinstance(path, str) or not path:
            raise SimError("missing", 'Missing value for "source.path".', target="source.path")
        svm_name, sep, vol_name = path.partition(":")
        if not sep or not svm_name or not vol_name:
            raise SimError("invalid", f'Invalid value "{path}" for "source.path": expected "<svm>:<volume>".',
                           target="source.path")
        local = cluster in (None, self.st.doc["cluster"]["name"])
        if local and any(s["name"] == svm_name for s in self.st.doc["svms"].values()):
            vol = self.endpoint(path, "source.path")
            return End(vol, svm_name)
        peer = self.st.peers.by_name.get(cluster) if not local else self.st.peers.owner_of(svm_name)
        dst_svm = self.st.svm_name(destination["svm"])
        if peer is None or not self.st.peers.peered(dst_svm, peer, svm_name):
            raise SimError("svm_not_peered", f'Vserver "{svm_name}" is not peered with Vserver "{dst_svm}"'
                           + (f' of cluster "{cluster}"' if cluster and not local else "")
                           + '. Create the peering with "vserver peer create" first.', target="source.path")
        view = self.st.peers.view(peer.name)
        vol = view.find_volume(svm_name, vol_name)
        if vol is None:
            raise SimError("volume_not_found", f'Volume "{vol_name}" in SVM "{svm_name}" (cluster "{peer.name}") '
                                               "does not exist.", target="source.path")
        return End(vol, svm_name, peer.name, view.data_dir / "volumes")

    def restore_relationship(self, source_path: Any, destination_path: Any,
                             source_cluster: Any = None) -> dict[str, Any]:
        """POST /snapmirror/relationships with restore=true: SOURCE is the protected copy (a DP volume,
        the destination of a mirror or vault, on this cluster or on a peer), DESTINATION the read-write volume
        the files go back to."""
        dst = self.endpoint(destination_path, "destination.path")
        end = self.source_endpoint(source_path, dst, source_cluster)
        src = end.vol
        if end.root is None and src["uuid"] == dst["uuid"]:
            raise SimError("invalid", "The source and destination of a SnapMirror relationship must differ.",
                           target="destination.path")
        if src["type"] != "dp":
            raise SimError("invalid", f'Volume "{source_path}" is not a data protection (DP) volume: the source of '
                                      "a restore relationship must be the destination of a SnapMirror or SnapVault "
                                      "relationship.", target="source.path")
        if dst["type"] != "rw":
            raise SimError("invalid", f'Volume "{destination_path}" is not a read-write volume; a restore writes into '
                                      "a read-write volume.", target="destination.path")
        for r in self.st.doc["relationships"].values():
            if r["destination"] == dst["uuid"] and r.get("restore"):
                other = self.source_path(r)
                raise SimError("exists", f'A restore relationship with destination "{destination_path}" already '
                                         f'exists (source "{other}"); delete it first.',
                               target="destination.path")
        ru = new_uuid()
        remote = None if end.root is None else {"cluster": end.cluster, "svm": end.svm, "volume": src["name"]}
        rel = {"uuid": ru, "source": src["uuid"] if remote is None else None, "source_remote": remote,
               "destination": dst["uuid"], "policy": None, "restore": True,
               "state": "uninitialized", "healthy": True, "unhealthy_reason": None, "transfers": [],
               "last_transfer_time": None}
        self.st.doc["relationships"][ru] = rel
        self.st.save()
        return rel

    MAX_RESTORE_FILES = 8

    def restore_transfer(self, rel: dict[str, Any], source_snapshot: Any, files: Any,
                         xfer_uuid: str | None = None) -> dict[str, Any]:
        """A restore transfer: FILES ([{source_path, destination_path}], at most 8) of SOURCE_SNAPSHOT (default:
        the newest snapshot of the source) over the destination volume's active file system; without FILES the
        whole active file system. Everything is checked before the first file is written."""
        end = self.source_end(rel)
        src = end.vol
        dst = self.st.doc["volumes"][rel["destination"]]
        if source_snapshot:
            snap = self.end_snapshot(end, source_snapshot)
        elif src["snapshots"]:
            snap = src["snapshots"][-1]
        else:
            raise SimError("restore_failed", f'Volume "{src["name"]}" has no Snapshot copy to restore from.')
        if files in (None, []):
            # No files: the destination's whole active file system becomes the snapshot's.
            self._storage(self.storage.restore_volume_from, (*end.key, snap["name"]),
                          self.st.vol_key(dst), end.root)
            pairs: list[tuple[str, str]] = []
        else:
            pairs = self._restore_pairs(end, snap, files)
            for rel_path, dest in pairs:
                self._storage(self.storage.restore_file_from, (*end.key, snap["name"]), rel_path,
                              self.st.vol_key(dst), dest, end.root)
        now = time.time()
        xfer = {"uuid": xfer_uuid or new_uuid(), "state": "success", "end_time": now, "snapshots": [snap["name"]],
                "bytes_transferred": 0, "files": [{"source_path": s, "destination_path": d} for s, d in pairs]}
        rel["transfers"] = (rel.get("transfers") or [])[-19:] + [xfer]
        rel.update(state="snapmirrored", healthy=True, unhealthy_reason=None, last_transfer_time=now)
        self.st.save()
        return xfer

    def source_path(self, rel: dict[str, Any]) -> str:
        remote = rel.get("source_remote")
        if remote:
            return f'{remote["svm"]}:{remote["volume"]}'
        return ":".join(self.st.vol_key(self.st.doc["volumes"][rel["source"]]))

    def _restore_pairs(self, src: End, snap: dict[str, Any], files: Any) -> list[tuple[str, str]]:
        """The (source, destination) paths of a restore transfer's FILES, all checked before any is written."""
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
            raise SimError("invalid", 'Invalid value for "files": a list of {"source_path", "destination_path"}.',
                           target="files")
        if len(files) > self.MAX_RESTORE_FILES:
            raise SimError("invalid", f"A restore transfer can restore at most {self.MAX_RESTORE_FILES} files or "
                                      f"LUNs; {len(files)} were given.", target="files")
        pairs = []
        for i, f in enumerate(files):
            unknown = sorted(set(f) - {"source_path", "destination_path"})
            if unknown:
                raise SimError("unexpected_argument", f'Unexpected argument "files.{unknown[0]}".',
                               target=f"files.{unknown[0]}")
            if not f.get("source_path"):
                raise SimError("missing", f'Missing value for "files[{i}].source_path".', target="files.source_path")
            pairs.append(self._check_restore_file(src, snap, f["source_path"], f.get("destination_path")))
        return pairs

    def delete_relationship(self, rel: dict[str, Any]) -> None:
        self.st.doc["relationships"].pop(rel["uuid"], None)
        self.st.save()
