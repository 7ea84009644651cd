"""ZAPI write handlers (SVM scope): snapshots, multicreate, CG start/commit, restores,
SnapMirror update, LUN serial numbers."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from .errors import ERROR_TABLE, SimError
from .faults import Knobs
from .zapi_info import InfoHandlers
from .zapi_xml import E, ZapiError, child_text, fields, query_matches, require, to_bool


class SnapshotHandlers(InfoHandlers):
    """Changing APIs; each one holds the state lock while it works (latency is slept outside)."""

    knobs: Knobs

    # -- snapshots (vserver scope) -------------------------------------------------------------
    def _volume(self, svm: dict[str, Any], name: str) -> dict[str, Any]:
        return self.st.find_volume(svm["name"], name)

    def snapshot_create(self, api: ET.Element, svm: dict[str, Any]) -> None:
        vname, sname = require(api, "volume"), require(api, "snapshot")
        with self.st.lock:
            self._volume(svm, vname)
        self.knobs.delay("snapshot_create")
        with self.st.lock:
            vol = self._volume(svm, vname)
            self.ops.create_snapshots([vol], sname, child_text(api, "comment"), child_text(api, "snapmirror-label"))
        return None

    def snapshot_multicreate(self, api: ET.Element, svm: dict[str, Any]) -> ET.Element:
        sname = require(api, "snapshot")
        names = [(e.text or "").strip() for e in api.findall("volume-names/volume-name")]
        if not names:
            raise ZapiError("13006", "Missing input: volume-names")
        cleanup = to_bool(child_text(api, "cleanup"), True)
        self.knobs.delay("snapshot_multicreate")
        with self.st.lock:
            good: list[dict[str, Any]] = []
            errors: list[tuple[str, SimError]] = []
            for n in names:
                try:
                    vol = self._volume(svm, n)
                    if any(s["name"] == sname for s in vol["snapshots"]):
                        raise SimError("snapshot_exists", f'Snapshot copy "{sname}" of volume "{n}" already exists.')
                    good.append(vol)
                except SimError as exc:
                    errors.append((n, exc))
            made: set[str] = set()
            if good and not (errors and cleanup):
                try:
                    self.ops.create_snapshots(good, sname)
                    made = {v["name"] for v in good}
                except SimError as exc:
                    errors.extend((v["name"], exc) for v in good)
        out = E("results")
        out.append(E("status", not errors))
        out.append(E("volume-is-snapcreated-list", children=[
            fields("volume-is-snapcreated", {"name": n, "is-snapcreated": n in made}) for n in names]))
        if errors:
            out.append(E("volume-errors", children=[
                fields("volume-error", {"name": n, "errno": ERROR_TABLE[e.kind][2], "reason": e.message,
                                        "vserver": svm["name"]}) for n, e in errors]))
        return out

    def snapshot_delete(self, api: ET.Element, svm: dict[str, Any]) -> None:
        vname, sname = require(api, "volume"), require(api, "snapshot")
        with self.st.lock:
            vol = self._volume(svm, vname)
            snap = self.st.find_snapshot(vol, sname, child_text(api, "snapshot-instance-uuid"))
            self.ops.delete_snapshot(vol, snap, ignore_owners=to_bool(child_text(api, "ignore-owners"), False))
        return None

    def volume_size(self, api: ET.Element, svm: dict[str, Any]) -> ET.Element:
        """volume-size volume [new-size]: with new-size (bytes, or [+-]N[kmgt]) set it; answer the size."""
        vname = require(api, "volume")
        new_size = child_text(api, "new-size")
        with self.st.lock:
            vol = self._volume(svm, vname)
            if new_size:
                self.ops.resize_volume(vol, new_size)
            size = vol["size"]
        return fields("results", {"volume-size": f"{size // (1024 * 1024)}m", "is-fixed-size-flex-volume": False,
                                  "is-readonly-flex-volume": vol["type"] == "dp"})

    def snapshot_rename(self, api: ET.Element, svm: dict[str, Any]) -> None:
        vname, cur, new = require(api, "volume"), require(api, "current-name"), require(api, "new-name")
        with self.st.lock:
            vol = self._volume(svm, vname)
            self.ops.modify_snapshot(vol, self.st.find_snapshot(vol, cur), {"name": new})
        return None

    def snapshot_modify_iter(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        """Set comment / snapmirror-label on every snapshot the query selects."""
        q = api.find("query/snapshot-info")
        attrs = api.find("attributes/snapshot-info")
        if q is None or attrs is None:
            raise ZapiError("13006", "Missing input: query and attributes")
        changes: dict[str, Any] = {}
        for zname, key in (("comment", "comment"), ("snapmirror-label", "snapmirror_label")):
            el = attrs.find(zname)
            if el is not None:
                changes[key] = (el.text or "").strip()
        # na_ontap_snapshot sends the unchanged name along; ONTAP accepts that, not a new one.
        same_name = child_text(attrs, "name") in (None, child_text(q, "name"))
        unsupported = [c.tag for c in attrs if c.tag not in ("comment", "snapmirror-label")
                       and not (c.tag == "name" and same_name)]
        if unsupported:
            raise ZapiError("13115", f"Field \"{unsupported[0]}\" cannot be modified with snapshot-modify-iter.")
        max_records = int(child_text(api, "max-records") or 20)
        ok: list[ET.Element] = []
        with self.st.lock:
            for vol in self._vols(svm):
                for snap in list(vol["snapshots"]):
                    if len(ok) >= max_records or not query_matches(q, self._snapshot_info(vol, snap), {}):
                        continue
                    self.ops.modify_snapshot(vol, snap, changes)
                    key = fields("snapshot-info", {"name": snap["name"], "volume": vol["name"],
                                                   "vserver": self.st.svm_name(vol["svm"])})
                    ok.append(E("snapshot-modify-iter-info", children=[E("snapshot-key", children=[key])]))
        out = E("results")
        out.append(E("num-succeeded", len(ok)))
        out.append(E("num-failed", 0))
        if to_bool(child_text(api, "return-success-list"), True):
            out.append(E("success-list", children=ok))
        return out

    @staticmethod
    def _in_volume(path: str, vname: str | None) -> tuple[str | None, str]:
        """(volume, path inside it) for '/vol/<vol>/<p>' or '/<p>' (relative to the volume input)."""
        if path.startswith("/vol/"):
            vol, rest = (path + "/").split("/", 3)[2:]
            return vol, "/" + rest.rstrip("/")
        return vname, "/" + path.lstrip("/")

    def snapshot_restore_file(self, api: ET.Element, svm: dict[str, Any]) -> None:
        path, sname = require(api, "path"), require(api, "snapshot")
        vname, rel = self._in_volume(path, child_text(api, "volume"))
        if not vname:
            raise ZapiError("13115", f"Invalid path {path}: give /vol/<volume>/<path> or the volume input.")
        dest = None
        if child_text(api, "restore-path"):
            dvol, dest = self._in_volume(child_text(api, "restore-path") or "", vname)
            if dvol != vname:
                raise ZapiError("13115", "restore-path must be in the same volume as path.")
        with self.st.lock:
            vol = self._volume(svm, vname)
            snap = self.st.find_snapshot(vol, sname, child_text(api, "snapshot-instance-uuid"))
            self.ops.restore_file(vol, snap, rel, dest, background=self.knobs.seconds("sfsr_background"))
        return None

    def snapshot_restore_file_info(self, _api: ET.Element, _svm: dict[str, Any] | None) -> ET.Element:
        """How many single-file restores still run in the background (ONTAP's limit is per node)."""
        with self.st.lock:
            running = self.ops.sfsr_in_progress
        out = E("results")
        out.append(E("max-sfsr-limit", 100))
        out.append(E("sfsr-in-progress", running))
        return out

    def snapshot_restore_volume(self, api: ET.Element, svm: dict[str, Any]) -> None:
        vname = require(api, "volume")
        sname, suuid = child_text(api, "snapshot"), child_text(api, "snapshot-instance-uuid")
        if not sname and not suuid:
            raise ZapiError("13006", "Missing input: snapshot")
        with self.st.lock:
            vol = self._volume(svm, vname)
            snap = self.st.find_snapshot(vol, sname, suuid)
            self.ops.restore_volume(vol, snap, force=to_bool(child_text(api, "force"), False))
        return None

    def cg_start(self, api: ET.Element, svm: dict[str, Any]) -> ET.Element:
        sname = require(api, "snapshot")
        names = [(e.text or "").strip() for e in api.findall("volumes/volume-name")]
        if not names:
            raise ZapiError("13006", "Missing input: volumes")
        user_timeout = child_text(api, "user-timeout")
        self.knobs.delay("cg_start")
        with self.st.lock:
            vols = [self._volume(svm, n) for n in names]
            cg_id = self.ops.cg_start(vols, sname, child_text(api, "timeout"), child_text(api, "snapmirror-label"),
                                      int(user_timeout) if user_timeout else None)
        return fields("results", {"cg-id": cg_id})

    def cg_commit(self, api: ET.Element, svm: dict[str, Any]) -> None:
        cg_id = require(api, "cg-id")
        self.knobs.delay("cg_commit")
        with self.st.lock:
            self.ops.cg_commit(cg_id)
        return None

    def snapmirror_update(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        loc = child_text(api, "destination-location")
        if loc:
            d_svm, _sep, d_vol = loc.partition(":")
        else:
            d_svm = child_text(api, "destination-vserver") or (svm["name"] if svm else None)
            d_vol = child_text(api, "destination-volume")
        if not d_svm or not d_vol:
            raise ZapiError("13006", "Missing input: destination-location or destination-vserver and "
                                     "destination-volume")
        self.knobs.delay("snapmirror_transfer")
        with self.st.lock:
            dst = self.st.find_volume(d_svm, d_vol)
            rel = next((r for r in self.st.doc["relationships"].values() if r["destination"] == dst["uuid"]), None)
            if rel is None:
                raise ZapiError("13001", f"There is no SnapMirror relationship with destination {d_svm}:{d_vol}.")
            try:
                self.ops.transfer(rel, child_text(api, "source-snapshot"))
            except SimError as exc:
                rel.update(healthy=False, unhealthy_reason=exc.message)
                self.st.save()
                raise
            self.st.doc["counters"]["sm_job"] = self.st.doc["counters"].get("sm_job", 0) + 1
            jobid = self.st.doc["counters"]["sm_job"]
        return fields("results", {"result-status": "succeeded", "result-jobid": jobid})

    def lun_get_serial_number(self, api: ET.Element, svm: dict[str, Any]) -> ET.Element:
        path = require(api, "path")
        with self.st.lock:
            for lu in self.st.doc["luns"].values():
                v = self.st.doc["volumes"][lu["volume"]]
                if v["svm"] == svm["uuid"] and f"/vol/{v['name']}/{lu['name']}" == path:
                    return fields("results", {"serial-number": lu["serial_number"]})
        raise ZapiError("15661", f'LUN "{path}" does not exist.')
