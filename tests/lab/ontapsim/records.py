"""REST record shapes (field names as ONTAP's REST API), built from the state document."""

from __future__ import annotations

import datetime as dt
import time
import uuid as uuidlib
from typing import Any

from .state import State


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(int(ts)).astimezone().isoformat(timespec="seconds")


def iso_duration(seconds: float) -> str:
    secs = max(0, int(seconds))
    days, rest = divmod(secs, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return ("P%dD" % days if days else "P") + "T%dH%dM%dS" % (h, m, s)


def version_full(version: tuple[int, int, int]) -> str:
    gen, major, minor = version
    rel = f"{gen}.{major}" + (f".{minor}" if minor else "")
    return f"NetApp Release {rel}: Tue Jul 25 10:19:28 UTC 2023"


def _svm_ref(st: State, svm_uuid: str | None) -> dict[str, Any] | None:
    if svm_uuid is None:
        return None
    return {"name": st.svm_name(svm_uuid), "uuid": svm_uuid,
            "_links": {"self": {"href": f"/api/svm/svms/{svm_uuid}"}}}


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def cluster(st: State) -> dict[str, Any]:
    c = st.doc["cluster"]
    v = st.version
    return {"name": c["name"], "uuid": c["uuid"],
            "version": {"full": version_full(v), "generation": v[0], "major": v[1], "minor": v[2]},
            "management_interfaces": [{"name": "cluster_mgmt", "ip": {"address": "127.0.0.10"}}],
            "_links": {"self": {"href": "/api/cluster"}}}


def node(st: State, n: dict[str, Any]) -> dict[str, Any]:
    v = st.version
    return {"uuid": n["uuid"], "name": n["name"], "model": n["model"], "serial_number": n["serial_number"],
            "state": "up", "membership": "member",
            "version": {"full": version_full(v), "generation": v[0], "major": v[1], "minor": v[2]},
            "management_interfaces": [{"ip": {"address": n["management_address"]}}],
            "_links": {"self": {"href": f"/api/cluster/nodes/{n['uuid']}"}}}


def software(st: State) -> dict[str, Any]:
    """/api/cluster/software: the running release on every node (no update in progress)."""
    rel = ".".join(map(str, st.version))
    return {"version": rel, "state": "completed",
            "nodes": [{"name": n["name"], "version": rel} for n in st.doc["nodes"]],
            "_links": {"self": {"href": "/api/cluster/software"}}}


def derived_uuid(*parts: str) -> str:
    """A stable uuid for an object the state derives rather than stores (aggregate, SVM peer)."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, "ontap-sim:" + ":".join(parts)))


AGGREGATE = "aggr1"  # the one aggregate every volume lives on


def aggregate(st: State) -> dict[str, Any]:
    node0 = st.doc["nodes"][0]
    size = max(2 * sum(v["size"] for v in st.doc["volumes"].values()), 1 << 40)
    used = sum(v["size"] for v in st.doc["volumes"].values())
    au = derived_uuid(st.doc["cluster"]["uuid"], AGGREGATE)
    return {"uuid": au, "name": AGGREGATE, "state": "online",
            "node": {"name": node0["name"], "uuid": node0["uuid"]},
            "home_node": {"name": node0["name"], "uuid": node0["uuid"]},
            "space": {"block_storage": {"size": size, "used": used, "available": size - used}},
            "_links": {"self": {"href": f"/api/storage/aggregates/{au}"}}}


def cluster_peers(st: State) -> list[dict[str, Any]]:
    """The peered clusters of the configuration; one whose state cannot be read is unavailable."""
    out = []
    for peer in st.peers:
        view = peer.view()
        pu = derived_uuid(st.doc["cluster"]["uuid"], peer.name)
        out.append({"uuid": pu, "name": peer.name,
                    "remote": {"name": peer.name, "ip_addresses": ["127.0.0.1"],
                               **({"serial_number": view.doc["nodes"][0]["serial_number"]} if view else {})},
                    "status": {"state": "available" if view else "unavailable"},
                    "authentication": {"state": "ok", "in_use": "ok"},
                    "encryption": {"state": "tls_psk"}, "ipspace": {"name": "Default"},
                    "_links": {"self": {"href": f"/api/cluster/peers/{pu}"}}})
    return out


def svm_peers(st: State) -> list[dict[str, Any]]:
    """The SVM peerings the modelled SnapMirror relationships need (both directions, this cluster), and those
    with the SVMs of peer clusters the configuration names."""
    pairs: set[tuple[str, str]] = set()
    for r in st.doc["relationships"].values():
        if r.get("source_remote"):
            continue
        a = st.doc["volumes"][r["source"]]["svm"]
        b = st.doc["volumes"][r["destination"]]["svm"]
        if a != b:
            pairs |= {(a, b), (b, a)}
    c = st.doc["cluster"]
    out = []
    for local, remote in sorted(pairs):
        pu = derived_uuid(local, remote)
        out.append({"uuid": pu, "name": st.svm_name(remote), "state": "peered", "applications": ["snapmirror"],
                    "svm": _svm_ref(st, local),
                    "peer": {"svm": _svm_ref(st, remote), "cluster": {"name": c["name"], "uuid": c["uuid"]}},
                    "_links": {"self": {"href": f"/api/svm/peers/{pu}"}}})
    for peer in st.peers:
        view = peer.view()
        for local, remote_svm in sorted(peer.svms.items()):
            lu = next((u for u, s in st.doc["svms"].items() if s["name"] == local), None)
            if lu is None:
                continue
            pu = derived_uuid(lu, peer.name, remote_svm)
            ru = view.svm_uuid(remote_svm) if view else None
            out.append({"uuid": pu, "name": remote_svm, "state": "peered", "applications": ["snapmirror"],
                        "svm": _svm_ref(st, lu),
                        "peer": {"svm": {"name": remote_svm, **({"uuid": ru} if ru else {})},
                                 "cluster": {"name": peer.name,
                                             **({"uuid": view.doc["cluster"]["uuid"]} if view else {})}},
                        "_links": {"self": {"href": f"/api/svm/peers/{pu}"}}})
    return out


def job(j: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in j.items() if not k.startswith("_") and v is not None}
    out["start_time"] = iso(j["start_time"])
    if j.get("end_time") is not None:
        out["end_time"] = iso(j["end_time"])
    out["_links"] = {"self": {"href": f"/api/cluster/jobs/{j['uuid']}"}}
    return out


def job_link(j: dict[str, Any]) -> dict[str, Any]:
    return {"uuid": j["uuid"], "_links": {"self": {"href": f"/api/cluster/jobs/{j['uuid']}"}}}


def svm(st: State, s: dict[str, Any]) -> dict[str, Any]:
    lifs = [lif for lif in st.doc["lifs"].values() if lif["svm"] == s["uuid"]]
    return {"uuid": s["uuid"], "name": s["name"], "state": s["state"], "subtype": s["subtype"],
            "language": "c.utf_8",
            "ip_interfaces": [{"name": lif["name"], "ip": {"address": lif["address"]},
                               "services": lif["services"]} for lif in lifs],
            "nfs": {"enabled": True}, "iscsi": {"enabled": True},
            "_links": {"self": {"href": f"/api/svm/svms/{s['uuid']}"}}}


def ip_interface(st: State, uuid: str, lif: dict[str, Any]) -> dict[str, Any]:
    rec = {"uuid": uuid, "name": lif["name"],
           "ip": {"address": lif["address"], "family": "ipv4", "netmask": lif["netmask"]},
           "scope": lif["scope"], "services": lif["services"], "state": "up", "enabled": True,
           "location": {"home_node": {"name": st.doc["nodes"][0]["name"]}},
           "_links": {"self": {"href": f"/api/network/ip/interfaces/{uuid}"}}}
    if lif["svm"]:
        rec["svm"] = _svm_ref(st, lif["svm"])
    return rec


def volume(st: State, v: dict[str, Any]) -> dict[str, Any]:
    used = st.storage.used_bytes(*st.vol_key(v))
    rec: dict[str, Any] = {
        "uuid": v["uuid"], "name": v["name"], "state": v["state"], "style": "flexvol", "type": v["type"],
        "create_time": iso(v["create_time"]), "svm": _svm_ref(st, v["svm"]),
        "space": {"size": v["size"], "used": used, "available": max(0, v["size"] - used),
                  "snapshot": {"reserve_percent": 5}},
        "snapshot_policy": {"name": "none"}, "snapshot_directory_access_enabled": True,
        "snapshot_count": len(v["snapshots"]),
        "nas": {"security_style": "unix", "export_policy": {"name": "default"}},
        "_links": {"self": {"href": f"/api/storage/volumes/{v['uuid']}"}}}
    if v.get("junction_path"):
        rec["nas"]["path"] = v["junction_path"]
    return rec


def snapshot(st: State, v: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "uuid": s["uuid"], "name": s["name"], "create_time": iso(s["create_time"]), "state": "valid",
        "size": 0, "volume": {"name": v["name"], "uuid": v["uuid"],
                              "_links": {"self": {"href": f"/api/storage/volumes/{v['uuid']}"}}},
        "svm": _svm_ref(st, v["svm"]),
        "_links": {"self": {"href": f"/api/storage/volumes/{v['uuid']}/snapshots/{s['uuid']}"}}}
    # ONTAP leaves unset attributes out of the record.
    for key in ("comment", "snapmirror_label", "expiry_time"):
        if s.get(key):
            rec[key] = s[key]
    if s.get("owners"):
        rec["owners"] = list(s["owners"])
    return rec


def lun(st: State, lu: dict[str, Any]) -> dict[str, Any]:
    v = st.doc["volumes"][lu["volume"]]
    path = st.storage.volume_dir(*st.vol_key(v)) / lu["name"]
    try:
        used = path.stat().st_blocks * 512
    except OSError:
        used = 0
    return {"uuid": lu["uuid"], "name": f"/vol/{v['name']}/{lu['name']}",
            "location": {"volume": {"name": v["name"], "uuid": v["uuid"]}, "logical_unit": lu["name"]},
            "serial_number": lu["serial_number"], "svm": _svm_ref(st, v["svm"]), "os_type": lu["os_type"],
            "class": "regular", "enabled": True,
            "space": {"size": lu["size"], "used": used, "guarantee": {"requested": False, "reserved": False}},
            "status": {"state": "online", "mapped": False, "read_only": False},
            "_links": {"self": {"href": f"/api/storage/luns/{lu['uuid']}"}}}


def policy(p: dict[str, Any]) -> dict[str, Any]:
    # REST shows a CLI "vault" policy as type async without snapshots on the source.
    return {"uuid": p["uuid"], "name": p["name"], "type": "async", "scope": "cluster",
            "create_snapshot_on_source": p["type"] != "vault",
            # ONTAP's schema has the rule count as a string ("7").
            "retention": [{"label": r["label"], "count": str(int(r.get("count", 7)))} for r in p.get("rules") or []],
            "_links": {"self": {"href": f"/api/snapmirror/policies/{p['uuid']}"}}}


def _source_end(st: Any, r: dict[str, Any]) -> dict[str, Any]:
    remote = r.get("source_remote")
    if remote:
        # a peer cluster's volume: path and SVM name as the peering knows them, and the cluster
        return {"path": f"{remote['svm']}:{remote['volume']}", "svm": {"name": remote["svm"]},
                "cluster": {"name": remote["cluster"]}}
    src = st.doc["volumes"][r["source"]]
    return {"path": f"{st.svm_name(src['svm'])}:{src['name']}", "svm": _svm_ref(st, src["svm"])}


def relationship(st: Any, r: dict[str, Any], held_by: str | None = None) -> dict[str, Any]:
    """A relationship record; HELD_BY: the peer cluster that holds it (listed on its source cluster with
    list_destinations_only=true), whose name the destination then carries."""
    dst = st.doc["volumes"][r["destination"]]
    dst_end: dict[str, Any] = {"path": f"{st.svm_name(dst['svm'])}:{dst['name']}", "svm": _svm_ref(st, dst["svm"])}
    if held_by is not None:
        dst_end["svm"] = {"name": st.svm_name(dst["svm"])}
        dst_end["cluster"] = {"name": held_by}
    rec: dict[str, Any] = {
        "uuid": r["uuid"],
        "source": _source_end(st, r),
        "destination": dst_end,
        "restore": bool(r.get("restore")),
        "state": r["state"], "healthy": r["healthy"],
        "_links": {"self": {"href": f"/api/snapmirror/relationships/{r['uuid']}"}}}
    if r.get("policy"):  # a restore relationship has no policy
        pol = st.doc["policies"][r["policy"]]
        rec["policy"] = {"name": pol["name"], "uuid": pol["uuid"], "type": "async"}
    if not r["healthy"]:
        rec["unhealthy_reason"] = [{"message": r.get("unhealthy_reason") or "Transfer failed.", "code": "13303812"}]
    if dst["snapshots"]:
        newest = dst["snapshots"][-1]
        rec["lag_time"] = iso_duration(time.time() - newest["create_time"])
        rec["exported_snapshot"] = newest["name"]
    if r.get("transfers"):
        last = r["transfers"][-1]
        rec["transfer"] = {"state": last["state"], "uuid": last["uuid"], "end_time": iso(last["end_time"]),
                           "bytes_transferred": last.get("bytes_transferred", 0)}
    return rec


def transfer(st: State, r: dict[str, Any], x: dict[str, Any]) -> dict[str, Any]:
    dst = st.doc["volumes"][r["destination"]]
    return _drop_none({
        "uuid": x["uuid"], "state": x["state"], "bytes_transferred": x.get("bytes_transferred", 0),
        "end_time": iso(x.get("end_time")),
        "relationship": {"uuid": r["uuid"], "destination": {"path": f"{st.svm_name(dst['svm'])}:{dst['name']}"}},
        "snapshot": x["snapshots"][-1] if x.get("snapshots") else None,
        "files": x.get("files"),
        "_links": {"self": {"href": f"/api/snapmirror/relationships/{r['uuid']}/transfers/{x['uuid']}"}}})


def cg(st: State, c: dict[str, Any]) -> dict[str, Any]:
    return {"uuid": c["uuid"], "name": c["name"], "svm": _svm_ref(st, c["svm"]),
            "volumes": [{"name": st.doc["volumes"][u]["name"], "uuid": u} for u in c["volumes"]
                        if u in st.doc["volumes"]],
            "_links": {"self": {"href": f"/api/application/consistency-groups/{c['uuid']}"}}}


def cg_snapshot(st: State, c: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    rec = {"uuid": s["uuid"], "name": s["name"], "create_time": iso(s["create_time"]),
           "consistency_type": "crash", "consistency_group": {"name": c["name"], "uuid": c["uuid"]},
           "svm": _svm_ref(st, c["svm"]),
           "_links": {"self": {"href": f"/api/application/consistency-groups/{c['uuid']}/snapshots/{s['uuid']}"}}}
    for key in ("comment", "snapmirror_label"):
        if s.get(key):
            rec[key] = s[key]
    if s.get("commit_deadline") is not None:
        rec["state"] = "pending_commit"  # sim: a started two-phase snapshot awaiting its commit
    return rec
