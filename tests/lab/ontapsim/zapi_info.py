"""ZAPI read handlers: system/version, and the *-get-iter iterators with max-records/tag paging."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from typing import Any

from . import records as R
from .ops import Ops
from .records import version_full
from .state import State
from .zapi_xml import E, ZapiError, child_text, fields, query_matches

POLICY_TYPES = {"async": "async_mirror", "vault": "vault", "mirror_vault": "mirror_vault"}
MIRROR_STATES = {"snapmirrored": "snapmirrored", "broken_off": "broken-off", "uninitialized": "uninitialized"}


class InfoHandlers:
    """Read-only APIs; every iterator answers num-records, attributes-list and next-tag."""

    st: State
    ops: Ops

    # -- iterators ---------------------------------------------------------------------------
    def _iter(self, api: ET.Element, info_tag: str, recs: list[ET.Element],
              aliases: dict[str, str] | None = None) -> ET.Element:
        query = api.find("query")
        q = query.find(info_tag) if query is not None else None
        if q is not None:
            recs = [r for r in recs if query_matches(q, r, aliases or {})]
        max_records = int(child_text(api, "max-records") or self.st.cfg["options"]["zapi_default_max_records"])
        tag = child_text(api, "tag")
        start = 0
        if tag:
            prefix, _sep, num = tag.rpartition(":")
            if prefix != f"ontap-sim:{api.tag}" or not num.isdigit():
                raise ZapiError("13115", f"Invalid tag: {tag}")
            start = int(num)
        page = recs[start:start + max_records]
        out = E("results")
        out.append(E("num-records", len(page)))
        if page:
            out.append(E("attributes-list", children=page))
        if start + max_records < len(recs):
            out.append(E("next-tag", f"ontap-sim:{api.tag}:{start + max_records}"))
        return out

    def _vols(self, svm: dict[str, Any] | None) -> list[dict[str, Any]]:
        return [v for v in self.st.doc["volumes"].values() if svm is None or v["svm"] == svm["uuid"]]

    # -- files -------------------------------------------------------------------------------
    def file_get_file_info(self, api: ET.Element, svm: dict[str, Any]) -> ET.Element:
        """file-get-file-info path=/vol/<volume>/<path> (`.snapshot/<name>/...` reaches into a snapshot):
        file-info {name, file-type, file-size}; a missing path fails with EFILENOTFOUND (13113)."""
        path = child_text(api, "path") or ""
        if not path.startswith("/vol/") or len(path.split("/")) < 3 or not path.split("/")[2]:
            raise ZapiError("13115", f"Invalid path {path!r}: give /vol/<volume>/<path>.")
        vname, rel = (path + "/").split("/", 3)[2:]
        with self.st.lock:
            vol = self.st.find_volume(svm["name"], vname)
            rec = self.ops.file_info(vol, rel.rstrip("/"))
        return fields("results", {"file-info": {"name": rec["name"], "file-type": rec["type"],
                                                "file-size": rec["size"]}})

    # -- system ------------------------------------------------------------------------------
    def system_get_version(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        v = self.st.version
        node = self.st.doc["nodes"][0]
        return fields("results", {
            "build-timestamp": 1690280368, "is-clustered": True, "version": version_full(v),
            "version-tuple": {"system-version-tuple": {"generation": v[0], "major": v[1], "minor": v[2]}},
            "node-version-details": {"node-version-detail-info": {
                "build-timestamp": 1690280368, "node-name": node["name"], "version": version_full(v)}}})

    def system_get_ontapi_version(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        major, minor = self.st.version[1:]
        return fields("results", {"major-version": 1, "minor-version": 100 + 10 * major + minor})

    def cluster_identity_get(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        c = self.st.doc["cluster"]
        return fields("results", {"attributes": {"cluster-identity-info": {
            "cluster-name": c["name"], "cluster-uuid": c["uuid"], "cluster-serial-number": "1-80-000011"}}})

    def system_node_get_iter(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        recs = [fields("node-details-info", {"node": n["name"], "node-uuid": n["uuid"], "node-model": n["model"],
                                             "node-serial-number": n["serial_number"], "is-node-healthy": True})
                for n in self.st.doc["nodes"]]
        return self._iter(api, "node-details-info", recs)

    def cluster_node_get_iter(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        v = self.st.version
        recs = [fields("cluster-node-info", {
            "node-name": n["name"], "node-uuid": n["uuid"], "node-model": n["model"],
            "node-serial-number": n["serial_number"], "is-node-healthy": True, "is-node-eligible": True,
            "node-location": "lab", "product-version": version_full(v)}) for n in self.st.doc["nodes"]]
        return self._iter(api, "cluster-node-info", recs)

    def aggr_get_iter(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        with self.st.lock:
            a = R.aggregate(self.st)
            space = a["space"]["block_storage"]
            count = len(self.st.doc["volumes"])
        rec = fields("aggr-attributes", {
            "aggregate-name": a["name"], "aggregate-uuid": a["uuid"],
            "aggr-ownership-attributes": {"home-name": a["home_node"]["name"], "owner-name": a["node"]["name"]},
            "aggr-raid-attributes": {"state": a["state"], "raid-type": "raid_dp", "is-root-aggregate": False},
            "aggr-space-attributes": {"size-total": space["size"], "size-used": space["used"],
                                      "size-available": space["available"]},
            "aggr-volume-count-attributes": {"flexvol-count": count}})
        return self._iter(api, "aggr-attributes", [rec])

    def vserver_peer_get_iter(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        with self.st.lock:
            recs = [fields("vserver-peer-info", {
                "vserver": p["svm"]["name"], "vserver-uuid": p["svm"]["uuid"],
                "peer-vserver": p["peer"]["svm"]["name"], "peer-vserver-uuid": p["peer"]["svm"]["uuid"],
                "remote-vserver-name": p["peer"]["svm"]["name"], "peer-cluster": p["peer"]["cluster"]["name"],
                "peer-state": p["state"],
                "applications": E("applications", children=[E("vserver-peer-application", "snapmirror")])})
                for p in R.svm_peers(self.st) if svm is None or p["svm"]["uuid"] == svm["uuid"]]
        return self._iter(api, "vserver-peer-info", recs)

    def sis_get_iter(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        """Storage efficiency: off on every simulated volume (no sis-status-info records), as on a
        volume where `volume efficiency` was never enabled."""
        return self._iter(api, "sis-status-info", [])

    def vserver_get_iter(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        with self.st.lock:
            recs = []
            if svm is None:
                c = self.st.doc["cluster"]
                recs.append(fields("vserver-info", {"vserver-name": c["name"], "uuid": c["uuid"],
                                                    "vserver-type": "admin", "state": "running"}))
            for s in self.st.doc["svms"].values():
                if svm is not None and s["uuid"] != svm["uuid"]:
                    continue
                recs.append(fields("vserver-info", {
                    "vserver-name": s["name"], "uuid": s["uuid"], "vserver-type": "data",
                    "vserver-subtype": s["subtype"], "state": s["state"], "operational-state": "running",
                    "root-volume": f"{s['name']}_root",
                    "allowed-protocols": E("allowed-protocols", children=[E("protocol", "nfs"),
                                                                          E("protocol", "iscsi")])}))
        return self._iter(api, "vserver-info", recs)

    def _volume_info(self, v: dict[str, Any]) -> ET.Element:
        svm_name = self.st.svm_name(v["svm"])
        used = self.st.storage.used_bytes(svm_name, v["name"])
        return fields("volume-attributes", {
            "volume-id-attributes": {
                "name": v["name"], "owning-vserver-name": svm_name, "owning-vserver-uuid": v["svm"],
                "junction-path": v.get("junction_path"), "instance-uuid": v["uuid"], "uuid": v["uuid"],
                "style": "flex", "style-extended": "flexvol", "type": v["type"], "comment": None,
                "containing-aggregate-name": "aggr1", "node": self.st.doc["nodes"][0]["name"]},
            "volume-space-attributes": {"size": v["size"], "size-used": used,
                                        "size-available": max(0, v["size"] - used),
                                        "percentage-snapshot-reserve": 5, "space-guarantee": "none",
                                        "space-slo": "none"},
            "volume-state-attributes": {"state": v["state"], "is-nvfail-enabled": False},
            "volume-snapshot-attributes": {"snapshot-policy": "none", "snapdir-access-enabled": True,
                                           "snapshot-count": len(v["snapshots"])},
            # What ONTAP returns for a volume created with defaults (na_ontap_volume reads all of it).
            "volume-security-attributes": {"style": "unix", "volume-security-unix-attributes": {
                "permissions": "0755", "user-id": 0, "group-id": 0}},
            "volume-export-attributes": {"policy": "default"},
            "volume-inode-attributes": {"files-total": 311277, "files-used": 100},
            "volume-performance-attributes": {"is-atime-update-enabled": True},
            "volume-comp-aggr-attributes": {"tiering-policy": "none"},
            "volume-vserver-dr-protection-attributes": {"vserver-dr-protection": "protected"},
            "volume-snapshot-autodelete-attributes": {
                "commitment": "try", "defer-delete": "user_created", "delete-order": "oldest_first",
                "destroy-list": "none", "is-autodelete-enabled": False, "prefix": "(not specified)",
                "target-free-space": 20, "trigger": "volume"}})

    def volume_get_iter(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        with self.st.lock:
            recs = [self._volume_info(v) for v in self._vols(svm)]
        # na_ontap_volume queries <vserver> where the record has owning-vserver-name.
        return self._iter(api, "volume-attributes", recs, {"vserver": "owning-vserver-name"})

    def _snapshot_info(self, v: dict[str, Any], s: dict[str, Any]) -> ET.Element:
        owners = s.get("owners") or []
        return fields("snapshot-info", {
            "name": s["name"], "volume": v["name"], "vserver": self.st.svm_name(v["svm"]),
            "access-time": int(s["create_time"]), "comment": s.get("comment"),
            "snapmirror-label": s.get("snapmirror_label"), "snapshot-instance-uuid": s["uuid"],
            "snapshot-version-uuid": s["uuid"], "busy": bool(owners), "state": "valid", "total": 0,
            "cumulative-total": 0, "dependency": ",".join(owners) if owners else None,
            "snapshot-owners-list": E("snapshot-owners-list", children=[
                fields("snapshot-owner", {"owner": o}) for o in owners]) if owners else None,
            "volume-provenance-uuid": v["uuid"]})

    def snapshot_get_iter(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        with self.st.lock:
            recs = [self._snapshot_info(v, s) for v in self._vols(svm) for s in v["snapshots"]]
        return self._iter(api, "snapshot-info", recs)

    def _lun_info(self, lu: dict[str, Any]) -> ET.Element:
        v = self.st.doc["volumes"][lu["volume"]]
        svm_name, vname = self.st.vol_key(v)
        try:
            used = (self.st.storage.volume_dir(svm_name, vname) / lu["name"]).stat().st_blocks * 512
        except OSError:
            used = 0
        return fields("lun-info", {
            "path": f"/vol/{vname}/{lu['name']}", "serial-number": lu["serial_number"], "volume": vname,
            "vserver": svm_name, "qtree": "", "uuid": lu["uuid"], "size": lu["size"], "size-used": used,
            "online": True, "mapped": False, "multiprotocol-type": lu["os_type"],
            "is-space-reservation-enabled": False, "is-space-alloc-enabled": False, "comment": ""})

    def lun_get_iter(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        with self.st.lock:
            recs = [self._lun_info(lu) for lu in self.st.doc["luns"].values()
                    if svm is None or self.st.doc["volumes"][lu["volume"]]["svm"] == svm["uuid"]]
        return self._iter(api, "lun-info", recs)

    def net_interface_get_iter(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        with self.st.lock:
            recs = []
            for lif in self.st.doc["lifs"].values():
                if svm is not None and lif["svm"] != svm["uuid"]:
                    continue
                protos = [p[len("data_"):] for p in lif["services"] if p in ("data_nfs", "data_iscsi", "data_cifs")]
                recs.append(fields("net-interface-info", {
                    "interface-name": lif["name"], "address": lif["address"], "netmask-length": lif["netmask"],
                    "vserver": self.st.svm_name(lif["svm"]) if lif["svm"] else self.st.doc["cluster"]["name"],
                    "role": lif["role"], "operational-status": "up", "administrative-status": "up",
                    "data-protocols": E("data-protocols", children=[E("data-protocol", p) for p in protos])
                    if protos else E("data-protocols", children=[E("data-protocol", "none")]),
                    "current-node": self.st.doc["nodes"][0]["name"]}))
        return self._iter(api, "net-interface-info", recs)

    def _sm_info(self, r: dict[str, Any], tag: str = "snapmirror-info") -> ET.Element:
        remote = r.get("source_remote")
        src = ({"name": remote["volume"]} if remote else self.st.doc["volumes"][r["source"]])
        dst = self.st.doc["volumes"][r["destination"]]
        pol = self.st.doc["policies"][r["policy"]] if r.get("policy") else {"name": None, "type": "async"}
        s_svm = remote["svm"] if remote else self.st.svm_name(src["svm"])
        d_svm = self.st.svm_name(dst["svm"])
        newest = dst["snapshots"][-1] if dst["snapshots"] else None
        last = (r.get("transfers") or [None])[-1]
        return fields(tag, {
            "source-location": f"{s_svm}:{src['name']}", "destination-location": f"{d_svm}:{dst['name']}",
            "source-vserver": s_svm, "source-volume": src["name"], "destination-vserver": d_svm,
            "destination-volume": dst["name"],
            "relationship-type": "restore" if r.get("restore") else "extended_data_protection",
            "relationship-id": r["uuid"], "policy": pol["name"], "policy-type": POLICY_TYPES[pol["type"]],
            "mirror-state": MIRROR_STATES.get(r["state"], r["state"]), "relationship-status": "idle",
            "is-healthy": r["healthy"], "unhealthy-reason": None if r["healthy"] else
            (r.get("unhealthy_reason") or "Transfer failed."),
            "lag-time": int(time.time() - newest["create_time"]) if newest else None,
            "newest-snapshot": newest["name"] if newest else None,
            "newest-snapshot-timestamp": int(newest["create_time"]) if newest else None,
            "last-transfer-end-timestamp": int(last["end_time"]) if last and last.get("end_time") else None,
            "last-transfer-error": None if r["healthy"] else r.get("unhealthy_reason"),
            "schedule": None, "max-transfer-rate": 0})

    def snapmirror_get_iter(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        with self.st.lock:
            recs = [self._sm_info(r) for r in self.st.doc["relationships"].values()
                    if svm is None or self.st.doc["volumes"][r["destination"]]["svm"] == svm["uuid"]]
        return self._iter(api, "snapmirror-info", recs)

    def snapmirror_get_destination_iter(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        with self.st.lock:
            recs = [self._sm_info(r, "snapmirror-destination-info") for r in self.st.doc["relationships"].values()
                    if not r.get("source_remote")
                    and (svm is None or self.st.doc["volumes"][r["source"]]["svm"] == svm["uuid"])]
        return self._iter(api, "snapmirror-destination-info", recs)

    def snapmirror_policy_get_iter(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        with self.st.lock:
            recs = []
            for p in self.st.doc["policies"].values():
                rules = [fields("snapmirror-policy-rule-info", {"snapmirror-label": r["label"],
                                                                "keep": int(r.get("count", 7))})
                         for r in p.get("rules") or []]
                recs.append(fields("snapmirror-policy-info", {
                    "policy-name": p["name"], "policy-type": POLICY_TYPES[p["type"]],
                    "vserver-name": self.st.doc["cluster"]["name"], "total-rules": len(rules),
                    "snapmirror-policy-rules": E("snapmirror-policy-rules", children=rules)}))
        return self._iter(api, "snapmirror-policy-info", recs)
