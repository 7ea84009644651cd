"""ZAPI (ONTAPI) at /servlets/netapp.servlets.admin.XMLrequest_filer, as netapp-lib speaks it:
<netapp vfiler=…><api>…</api></netapp> in, <netapp><results status=… errno reason>…</results> out."""

from __future__ import annotations

import fnmatch
import time
import xml.etree.ElementTree as ET
from typing import Any, Callable

from .auth import Auth
from .errors import ERROR_TABLE, SimError
from .faults import Knobs
from .ops import Ops
from .records import version_full
from .state import State

ZAPI_PATH = "/servlets/netapp.servlets.admin.XMLrequest_filer"
HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE netapp SYSTEM "file:/etc/netapp_gx.dtd">\n'
        '<netapp version="1.21" xmlns="http://www.netapp.com/filer/admin">')
MISSING_VSERVER = "Vserver API missing vserver parameter."
POLICY_TYPES = {"async": "async_mirror", "vault": "vault", "mirror_vault": "mirror_vault"}
MIRROR_STATES = {"snapmirrored": "snapmirrored", "broken_off": "broken-off", "uninitialized": "uninitialized"}


class ZapiError(Exception):
    def __init__(self, errno: str, reason: str) -> None:
        super().__init__(reason)
        self.errno = errno
        self.reason = reason


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _strip_ns(elem: ET.Element) -> ET.Element:
    for e in elem.iter():
        e.tag = _local(e.tag)
    return elem


def _text(elem: ET.Element, name: str, default: str | None = None) -> str | None:
    child = elem.find(name)
    if child is None or child.text is None:
        return default
    return child.text.strip()


def _bool(value: str | None, default: bool) -> bool:
    return default if value is None else value.strip().lower() == "true"


def _require(elem: ET.Element, name: str) -> str:
    value = _text(elem, name)
    if not value:
        raise ZapiError("13006", f"Missing input: {name}")
    return value


def E(tag: str, text: Any = None, children: list[ET.Element] | None = None) -> ET.Element:
    el = ET.Element(tag)
    if text is not None:
        el.text = ("true" if text else "false") if isinstance(text, bool) else str(text)
    for c in children or []:
        el.append(c)
    return el


def fields(tag: str, values: dict[str, Any]) -> ET.Element:
    """<tag> with one child per non-None value (dict values nest, ET elements are appended)."""
    el = ET.Element(tag)
    for k, v in values.items():
        if v is None:
            continue
        if isinstance(v, ET.Element):
            el.append(v)
        elif isinstance(v, dict):
            el.append(fields(k, v))
        else:
            el.append(E(k, v))
    return el


def _query_matches(query: ET.Element, record: ET.Element, aliases: dict[str, str]) -> bool:
    """Every leaf of QUERY equals (or glob-matches, or is one of a|b) the same path in RECORD."""
    for q in query:
        name = aliases.get(q.tag, q.tag)
        target = record.find(name)
        if len(q):
            if target is None or not _query_matches(q, target, aliases):
                return False
            continue
        want = (q.text or "").strip()
        if want == "":
            continue
        have = (target.text or "").strip() if target is not None else None
        if have is None:
            return False
        alts = want.split("|")
        if not any(fnmatch.fnmatchcase(have, a) if "*" in a else (have == a or have.lower() == a.lower()
                                                                  if a in ("true", "false") else have == a)
                   for a in alts):
            return False
    return True


class ZapiApi:
    def __init__(self, state: State, ops: Ops, knobs: Knobs, auth: Auth) -> None:
        self.st = state
        self.ops = ops
        self.knobs = knobs
        self.auth = auth
        # api -> (handler, action, scope): scope "cluster" = not on a data vserver,
        # "vserver" = needs the vfiler attribute, "any" = both (tunnelled: that SVM only).
        self.apis: dict[str, tuple[Callable[..., ET.Element | None], str, str]] = {
            "system-get-version": (self.system_get_version, "read", "any"),
            "system-get-ontapi-version": (self.system_get_ontapi_version, "read", "any"),
            "cluster-identity-get": (self.cluster_identity_get, "read", "cluster"),
            "system-node-get-iter": (self.system_node_get_iter, "read", "cluster"),
            "vserver-get-iter": (self.vserver_get_iter, "read", "any"),
            "volume-get-iter": (self.volume_get_iter, "read", "any"),
            "snapshot-get-iter": (self.snapshot_get_iter, "read", "any"),
            "lun-get-iter": (self.lun_get_iter, "read", "any"),
            "net-interface-get-iter": (self.net_interface_get_iter, "read", "any"),
            "snapmirror-get-iter": (self.snapmirror_get_iter, "read", "any"),
            "snapmirror-get-destination-iter": (self.snapmirror_get_destination_iter, "read", "any"),
            "snapmirror-policy-get-iter": (self.snapmirror_policy_get_iter, "read", "any"),
            "snapshot-create": (self.snapshot_create, "snapshot_create", "vserver"),
            "snapshot-multicreate": (self.snapshot_multicreate, "snapshot_create", "vserver"),
            "snapshot-delete": (self.snapshot_delete, "snapshot_delete", "vserver"),
            "snapshot-rename": (self.snapshot_rename, "snapshot_modify", "vserver"),
            "snapshot-modify-iter": (self.snapshot_modify_iter, "snapshot_modify", "any"),
            "snapshot-restore-file": (self.snapshot_restore_file, "restore", "vserver"),
            "snapshot-restore-volume": (self.snapshot_restore_volume, "restore", "vserver"),
            "cg-start": (self.cg_start, "snapshot_create", "vserver"),
            "cg-commit": (self.cg_commit, "snapshot_create", "vserver"),
            "snapmirror-update": (self.snapmirror_update, "snapmirror_update", "any"),
            "lun-get-serial-number": (self.lun_get_serial_number, "read", "vserver"),
        }

    # -- envelope ----------------------------------------------------------------------------
    @staticmethod
    def peek(raw: bytes) -> tuple[str | None, str | None]:
        """(API name, vfiler) of a request, for the call log and fault matching."""
        try:
            root = ET.fromstring(raw)
        except ET.ParseError:
            return None, None
        api = next(iter(root), None)
        return (_local(api.tag) if api is not None else None), root.get("vfiler")

    @staticmethod
    def failure(errno: str, reason: str) -> tuple[bytes, str, str]:
        res = E("results")
        res.set("status", "failed")
        res.set("errno", str(errno))
        res.set("reason", reason)
        return (HEAD + ET.tostring(res, encoding="unicode") + "</netapp>").encode(), "failed", str(errno)

    @staticmethod
    def success(results: ET.Element | None) -> tuple[bytes, str, None]:
        res = results if results is not None else E("results")
        res.tag = "results"
        res.set("status", "passed")
        return (HEAD + ET.tostring(res, encoding="unicode") + "</netapp>").encode(), "passed", None

    def handle(self, raw: bytes, user: dict[str, Any]) -> tuple[bytes, str, str | None]:
        try:
            return self.success(self._call(raw, user))
        except ZapiError as exc:
            return self.failure(exc.errno, exc.reason)
        except SimError as exc:
            return self.failure(ERROR_TABLE[exc.kind][2], exc.message)
        except (ValueError, TypeError) as exc:
            return self.failure("13115", f"Invalid input: {exc}")

    def _call(self, raw: bytes, user: dict[str, Any]) -> ET.Element | None:
        if not self.st.cfg["options"].get("zapi", True):
            raise ZapiError("13005", "ONTAPI is disabled on this cluster (system services web ontapi).")
        try:
            root = _strip_ns(ET.fromstring(raw))
        except ET.ParseError as exc:
            raise ZapiError("13001", f"Invalid XML request: {exc}") from None
        if root.tag != "netapp" or not len(root):
            raise ZapiError("13001", "Invalid request: expected <netapp><api/></netapp>.")
        api = root[0]
        vfiler = root.get("vfiler") or None
        entry = self.apis.get(api.tag)
        if entry is None:
            where = f" on data vserver {vfiler}" if vfiler else ""
            raise ZapiError("13005", f"Unable to find API: {api.tag}{where}")
        handler, action, scope = entry
        svm: dict[str, Any] | None = None
        if vfiler:
            with self.st.lock:
                try:
                    svm = self.st.find_svm(vfiler)
                except SimError:
                    raise ZapiError("15698", "Specified vserver not found") from None
            if scope == "cluster":
                raise ZapiError("13005", f"Unable to find API: {api.tag} on data vserver {vfiler}")
        elif scope == "vserver":
            raise ZapiError("13001", MISSING_VSERVER)
        if not self.auth.allowed(user, action):
            if action == "read":
                raise ZapiError("13003", f"Insufficient privileges: user '{user['name']}' does not have read "
                                         "access to this resource")
            raise ZapiError("13003", f"Insufficient privileges: user '{user['name']}' does not have write access "
                                     "to this resource")
        return handler(api, svm)

    # -- iterators ---------------------------------------------------------------------------
    def _iter(self, api: ET.Element, info_tag: str, recs: list[ET.Element],
              aliases: dict[str, str] | None = None) -> ET.Element:
        query = api.find("query")
        q = query.find(info_tag) if query is not None else None
        if q is not None:
            recs = [r for r in recs if _query_matches(q, r, aliases or {})]
        max_records = int(_text(api, "max-records") or self.st.cfg["options"]["zapi_default_max_records"])
        tag = _text(api, "tag")
        start = 0
        if tag:
            prefix, _, num = tag.rpartition(":")
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
        _, major, minor = self.st.version
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
        svm_name, _ = self.st.vol_key(v)
        used = self.st.storage.used_bytes(svm_name, v["name"])
        return fields("volume-attributes", {
            "volume-id-attributes": {
                "name": v["name"], "owning-vserver-name": svm_name, "owning-vserver-uuid": v["svm"],
                "junction-path": v.get("junction_path"), "instance-uuid": v["uuid"], "uuid": v["uuid"],
                "style": "flex", "style-extended": "flexvol", "type": v["type"],
                "containing-aggregate-name": "aggr1", "node": self.st.doc["nodes"][0]["name"]},
            "volume-space-attributes": {"size": v["size"], "size-used": used,
                                        "size-available": max(0, v["size"] - used),
                                        "percentage-snapshot-reserve": 5},
            "volume-state-attributes": {"state": v["state"]},
            "volume-snapshot-attributes": {"snapshot-policy": "none", "snapdir-access-enabled": True,
                                           "snapshot-count": len(v["snapshots"])}})

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
        src = self.st.doc["volumes"][r["source"]]
        dst = self.st.doc["volumes"][r["destination"]]
        pol = self.st.doc["policies"][r["policy"]]
        s_svm, d_svm = self.st.svm_name(src["svm"]), self.st.svm_name(dst["svm"])
        newest = dst["snapshots"][-1] if dst["snapshots"] else None
        last = (r.get("transfers") or [None])[-1]
        return fields(tag, {
            "source-location": f"{s_svm}:{src['name']}", "destination-location": f"{d_svm}:{dst['name']}",
            "source-vserver": s_svm, "source-volume": src["name"], "destination-vserver": d_svm,
            "destination-volume": dst["name"], "relationship-type": "extended_data_protection",
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
                    if svm is None or self.st.doc["volumes"][r["source"]]["svm"] == svm["uuid"]]
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

    # -- snapshots (vserver scope) -------------------------------------------------------------
    def _volume(self, svm: dict[str, Any], name: str) -> dict[str, Any]:
        return self.st.find_volume(svm["name"], name)

    def snapshot_create(self, api: ET.Element, svm: dict[str, Any]) -> None:
        vname, sname = _require(api, "volume"), _require(api, "snapshot")
        with self.st.lock:
            self._volume(svm, vname)
        self.knobs.delay("snapshot_create")
        with self.st.lock:
            vol = self._volume(svm, vname)
            self.ops.create_snapshots([vol], sname, _text(api, "comment"), _text(api, "snapmirror-label"))
        return None

    def snapshot_multicreate(self, api: ET.Element, svm: dict[str, Any]) -> ET.Element:
        sname = _require(api, "snapshot")
        names = [(e.text or "").strip() for e in api.findall("volume-names/volume-name")]
        if not names:
            raise ZapiError("13006", "Missing input: volume-names")
        cleanup = _bool(_text(api, "cleanup"), True)
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
        vname, sname = _require(api, "volume"), _require(api, "snapshot")
        with self.st.lock:
            vol = self._volume(svm, vname)
            snap = self.st.find_snapshot(vol, sname, _text(api, "snapshot-instance-uuid"))
            self.ops.delete_snapshot(vol, snap, ignore_owners=_bool(_text(api, "ignore-owners"), False))
        return None

    def snapshot_rename(self, api: ET.Element, svm: dict[str, Any]) -> None:
        vname, cur, new = _require(api, "volume"), _require(api, "current-name"), _require(api, "new-name")
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
        unsupported = [c.tag for c in attrs if c.tag not in ("comment", "snapmirror-label")]
        if unsupported:
            raise ZapiError("13115", f"Field \"{unsupported[0]}\" cannot be modified with snapshot-modify-iter.")
        max_records = int(_text(api, "max-records") or 20)
        ok: list[ET.Element] = []
        with self.st.lock:
            for vol in self._vols(svm):
                for snap in list(vol["snapshots"]):
                    if len(ok) >= max_records or not _query_matches(q, self._snapshot_info(vol, snap), {}):
                        continue
                    self.ops.modify_snapshot(vol, snap, changes)
                    key = fields("snapshot-info", {"name": snap["name"], "volume": vol["name"],
                                                   "vserver": self.st.svm_name(vol["svm"])})
                    ok.append(E("snapshot-modify-iter-info", children=[E("snapshot-key", children=[key])]))
        out = E("results")
        out.append(E("num-succeeded", len(ok)))
        out.append(E("num-failed", 0))
        if _bool(_text(api, "return-success-list"), True):
            out.append(E("success-list", children=ok))
        return out

    @staticmethod
    def _in_volume(path: str, vname: str | None) -> tuple[str | None, str]:
        """(volume, path inside it) for '/vol/<vol>/<p>' or '/<p>' (relative to the volume input)."""
        if path.startswith("/vol/"):
            _, _, vol, rest = (path + "/").split("/", 3)
            return vol, "/" + rest.rstrip("/")
        return vname, "/" + path.lstrip("/")

    def snapshot_restore_file(self, api: ET.Element, svm: dict[str, Any]) -> None:
        path, sname = _require(api, "path"), _require(api, "snapshot")
        vname, rel = self._in_volume(path, _text(api, "volume"))
        if not vname:
            raise ZapiError("13115", f"Invalid path {path}: give /vol/<volume>/<path> or the volume input.")
        dest = None
        if _text(api, "restore-path"):
            dvol, dest = self._in_volume(_text(api, "restore-path") or "", vname)
            if dvol != vname:
                raise ZapiError("13115", "restore-path must be in the same volume as path.")
        with self.st.lock:
            vol = self._volume(svm, vname)
            snap = self.st.find_snapshot(vol, sname, _text(api, "snapshot-instance-uuid"))
            self.ops.restore_file(vol, snap, rel, dest)
        return None

    def snapshot_restore_volume(self, api: ET.Element, svm: dict[str, Any]) -> None:
        vname = _require(api, "volume")
        sname, suuid = _text(api, "snapshot"), _text(api, "snapshot-instance-uuid")
        if not sname and not suuid:
            raise ZapiError("13006", "Missing input: snapshot")
        with self.st.lock:
            vol = self._volume(svm, vname)
            snap = self.st.find_snapshot(vol, sname, suuid)
            self.ops.restore_volume(vol, snap, force=_bool(_text(api, "force"), False))
        return None

    def cg_start(self, api: ET.Element, svm: dict[str, Any]) -> ET.Element:
        sname = _require(api, "snapshot")
        names = [(e.text or "").strip() for e in api.findall("volumes/volume-name")]
        if not names:
            raise ZapiError("13006", "Missing input: volumes")
        user_timeout = _text(api, "user-timeout")
        self.knobs.delay("cg_start")
        with self.st.lock:
            vols = [self._volume(svm, n) for n in names]
            cg_id = self.ops.cg_start(vols, sname, _text(api, "timeout", "medium") or "medium",
                                      _text(api, "snapmirror-label"), int(user_timeout) if user_timeout else None)
        return fields("results", {"cg-id": cg_id})

    def cg_commit(self, api: ET.Element, svm: dict[str, Any]) -> None:
        cg_id = _require(api, "cg-id")
        self.knobs.delay("cg_commit")
        with self.st.lock:
            self.ops.cg_commit(cg_id)
        return None

    def snapmirror_update(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        loc = _text(api, "destination-location")
        if loc:
            d_svm, _, d_vol = loc.partition(":")
        else:
            d_svm = _text(api, "destination-vserver") or (svm["name"] if svm else None)
            d_vol = _text(api, "destination-volume")
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
                self.ops.transfer(rel, _text(api, "source-snapshot"))
            except SimError as exc:
                rel.update(healthy=False, unhealthy_reason=exc.message)
                self.st.save()
                raise
            self.st.doc["counters"]["sm_job"] = self.st.doc["counters"].get("sm_job", 0) + 1
            jobid = self.st.doc["counters"]["sm_job"]
        return fields("results", {"result-status": "succeeded", "result-jobid": jobid})

    def lun_get_serial_number(self, api: ET.Element, svm: dict[str, Any]) -> ET.Element:
        path = _require(api, "path")
        with self.st.lock:
            for lu in self.st.doc["luns"].values():
                v = self.st.doc["volumes"][lu["volume"]]
                if v["svm"] == svm["uuid"] and f"/vol/{v['name']}/{lu['name']}" == path:
                    return fields("results", {"serial-number": lu["serial_number"]})
        raise ZapiError("15661", f'LUN "{path}" does not exist.')
