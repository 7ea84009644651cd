"""What NetApp's own clients need from the simulator (netapp-ontap, netapp.ontap modules), one test per
behaviour, with the stdlib REST client and plain netapp-lib: DELETE bodies, doubled slashes, `fields=`
names checked against ONTAP's schemas, SVM peers, volume size changes, the extra read APIs."""

from __future__ import annotations

import pytest
from netapp_lib.api.zapi import zapi
from simapi import zapi_server, zcall, zelem


@pytest.fixture
def zl(lab, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", lab.sim.ca_file)
    return lab, zapi_server(lab.sim, vserver="svm1"), zapi_server(lab.sim)


def _snap_uuid(api, vol_uuid: str, name: str) -> str:
    return api.get(f"/api/storage/volumes/{vol_uuid}/snapshots", name=name)["records"][0]["uuid"]


# -- DELETE bodies ------------------------------------------------------------------------------------
def test_delete_with_empty_object_body_is_accepted(api):
    vol = api.volume("vol_ds1")
    assert api.create_snapshot(vol["uuid"], "d1").status == 201
    su = _snap_uuid(api, vol["uuid"], "d1")
    r = api.call("DELETE", f"/api/storage/volumes/{vol['uuid']}/snapshots/{su}", {}, query={"return_timeout": 30})
    assert r.status == 200, r
    assert api.snapshots(vol["uuid"]) == []


def test_delete_with_a_real_body_and_get_with_any_body_are_refused(api):
    vol = api.volume("vol_ds1")
    api.create_snapshot(vol["uuid"], "d1")
    su = _snap_uuid(api, vol["uuid"], "d1")
    r = api.call("DELETE", f"/api/storage/volumes/{vol['uuid']}/snapshots/{su}", {"name": "d1"})
    assert (r.status, r["error"]["code"]) == (400, "262198")
    r = api.call("GET", "/api/cluster", {})
    assert (r.status, r["error"]["code"]) == (400, "262198")
    assert [s["name"] for s in api.snapshots(vol["uuid"])] == ["d1"]


def test_bulk_snapshot_delete_by_filter(api):
    vol = api.volume("vol_ds2")
    for name in ("a1", "a2", "b1"):
        api.create_snapshot(vol["uuid"], name)
    r = api.call("DELETE", f"/api/storage/volumes/{vol['uuid']}/snapshots", {},
                 query={"name": "a*", "return_timeout": 30})
    assert r.status == 200, r
    assert [s["name"] for s in api.snapshots(vol["uuid"])] == ["b1"]
    r = api.call("DELETE", f"/api/storage/volumes/{vol['uuid']}/snapshots")
    assert (r.status, r["error"]["code"]) == (400, "262177")
    assert [s["name"] for s in api.snapshots(vol["uuid"])] == ["b1"]


# -- paths and fields ---------------------------------------------------------------------------------
def test_doubled_slashes_are_one(lab):
    r = lab.get("/api//application/consistency-groups")
    assert r.status == 200 and r["num_records"] == 0
    assert lab.get("/api//storage//volumes", name="vol_ds1")["records"][0]["name"] == "vol_ds1"


@pytest.mark.parametrize("path", ["/api/storage/volumes", "/api/cluster", "/api/snapmirror/relationships",
                                  "/api/storage/luns", "/api/svm/peers"])
def test_unknown_field_name_is_refused_like_ontap(lab, path):
    r = lab.get(path, fields="uuid,bogus_field")
    assert r.status == 400
    assert r["error"] == {"message": 'The value "bogus_field" is invalid for field "fields"', "code": "262197",
                          "target": "fields"}


def test_a_name_the_resource_lacks_is_refused(lab):
    """SnapMirror relationships have no `name` in ONTAP's schema."""
    assert lab.get("/api/snapmirror/relationships", fields="name")["error"]["code"] == "262197"


def test_unknown_nested_field_is_refused_known_ones_pass(lab):
    assert lab.get("/api/storage/volumes", fields="svm.bogus")["error"]["code"] == "262197"
    ok = lab.get("/api/storage/volumes", name="vol_ds1",
                 fields="svm.name,space.snapshot.reserve_percent,nas.path,!space.used,snapshot_count")
    assert ok.status == 200
    rec = ok["records"][0]
    assert rec["svm"]["name"] == "svm1" and rec["space"]["snapshot"]["reserve_percent"] == 5
    # A real ONTAP field the simulator does not model is accepted and simply absent.
    rec = lab.get("/api/storage/volumes", name="vol_ds1", fields="efficiency.compression")["records"][0]
    assert "efficiency" not in rec
    assert lab.get("/api/cluster", fields="*").status == 200
    assert lab.get("/api/cluster", fields="**").status == 200


# -- SVM peers -----------------------------------------------------------------------------------------
def test_svm_peers_rest_for_modelled_relationships(lab):
    recs = lab.get("/api/svm/peers", fields="svm,peer,state,applications")["records"]
    assert {(r["svm"]["name"], r["peer"]["svm"]["name"]) for r in recs} == {("svm1", "svm_dr"), ("svm_dr", "svm1")}
    assert all(r["state"] == "peered" and r["applications"] == ["snapmirror"] for r in recs)
    one = lab.get("/api/svm/peers", name="svm1", svm__name="svm_dr", fields="peer")["records"]
    assert [(r["peer"]["svm"]["name"], r["peer"]["cluster"]["name"]) for r in one] == [("svm1", "lab2")]
    assert lab.get(f"/api/svm/peers/{one[0]['uuid']}")["name"] == "svm1"
    assert lab.get("/api/svm/peers/nope").status == 404


def test_svm_peers_zapi(zl):
    _lab, _svm1, cluster = zl
    res = cluster.invoke_successfully(zelem("vserver-peer-get-iter", {"query": {"vserver-peer-info": {
        "peer-vserver": "svm1", "vserver": "svm_dr"}}}), enable_tunneling=True)
    infos = res.get_child_by_name("attributes-list").get_children()
    assert [(i["vserver"], i["remote-vserver-name"], i["peer-cluster"], i["peer-state"]) for i in infos] == [
        ("svm_dr", "svm1", "lab2", "peered")]


def test_no_relationship_no_peers(api):
    assert api.get("/api/svm/peers")["num_records"] == 0


# -- snapshot-modify-iter with the unchanged name -------------------------------------------------------
def test_snapshot_modify_iter_accepts_the_unchanged_name_only(zl):
    lab, svm1, _cluster = zl
    zcall(svm1, "snapshot-create", volume="vol_ds1", snapshot="m1")
    query = {"snapshot-info": {"name": "m1", "vserver": "svm1"}}
    res = svm1.invoke_successfully(zelem("snapshot-modify-iter", {
        "query": query, "attributes": {"snapshot-info": {"name": "m1", "comment": "new"}}}), enable_tunneling=True)
    assert res["num-succeeded"] == "1"
    vol = lab.volume("vol_ds1")
    assert lab.snapshots(vol["uuid"])[0]["comment"] == "new"
    with pytest.raises(zapi.NaApiError) as err:
        svm1.invoke_successfully(zelem("snapshot-modify-iter", {
            "query": query, "attributes": {"snapshot-info": {"name": "m2", "comment": "x"}}}), enable_tunneling=True)
    assert err.value.code == "13115" and "name" in err.value.message
    assert [s["name"] for s in lab.snapshots(vol["uuid"])] == ["m1"]


# -- volume records and size ------------------------------------------------------------------------------
def test_volume_get_iter_is_as_wide_as_na_ontap_volume_reads(zl):
    _lab, svm1, _cluster = zl
    res = svm1.invoke_successfully(zelem("volume-get-iter", {"query": {"volume-attributes": {
        "volume-id-attributes": {"name": "vol_ds1"}}}}), enable_tunneling=True)
    attrs = res.get_child_by_name("attributes-list").get_children()[0]
    unix = attrs.get_child_by_name("volume-security-attributes").get_child_by_name("volume-security-unix-attributes")
    assert unix["permissions"] == "0755"
    for child in ("volume-export-attributes", "volume-inode-attributes", "volume-performance-attributes",
                  "volume-snapshot-autodelete-attributes", "volume-vserver-dr-protection-attributes"):
        assert attrs.get_child_by_name(child) is not None, child
    assert attrs.get_child_by_name("volume-space-attributes")["space-guarantee"] == "none"


def test_volume_size_rest(lab):
    vol = lab.volume("vol_ds1")
    r = lab.patch(f"/api/storage/volumes/{vol['uuid']}", {"size": 2 << 30}, query={"return_timeout": 30})
    assert r.status == 200, r
    assert lab.volume("vol_ds1")["space"]["size"] == 2 << 30
    small = lab.patch(f"/api/storage/volumes/{vol['uuid']}", {"size": 1024}, query={"return_timeout": 30})
    assert small.status == 400 and small["error"]["code"] == "262185"
    viewer = type(lab)(lab.sim, user="viewer", password="v")
    assert viewer.patch(f"/api/storage/volumes/{vol['uuid']}", {"size": 3 << 30}).status == 403
    backup = type(lab)(lab.sim, user="backup", password="b")
    assert backup.patch(f"/api/storage/volumes/{vol['uuid']}", {"size": 3 << 30}).status == 403
    assert lab.volume("vol_ds1")["space"]["size"] == 2 << 30


def test_volume_size_zapi(zl):
    lab, svm1, _cluster = zl
    res = zcall(svm1, "volume-size", volume="vol_ds1", **{"new-size": "+1g"})
    assert res["volume-size"] == "2048m"
    assert lab.volume("vol_ds1")["space"]["size"] == 2 << 30
    zcall(svm1, "volume-size", volume="vol_ds1", **{"new-size": str(3 << 30)})
    assert lab.volume("vol_ds1")["space"]["size"] == 3 << 30


# -- cluster/software, nodes, aggregates -------------------------------------------------------------------
def test_cluster_software_and_aggregates_rest(lab):
    sw = lab.get("/api/cluster/software")
    assert sw["version"] == "9.13.1" and sw["nodes"][0]["name"] == "lab2-01"
    aggrs = lab.get("/api/storage/aggregates", fields="space,node,state")["records"]
    assert [(a["name"], a["state"]) for a in aggrs] == [("aggr1", "online")]
    assert aggrs[0]["space"]["block_storage"]["size"] >= 1 << 40
    assert lab.get(f"/api/storage/aggregates/{aggrs[0]['uuid']}")["name"] == "aggr1"


def test_cluster_node_and_aggr_get_iter(zl):
    _lab, svm1, cluster = zl
    nodes = zcall(cluster, "cluster-node-get-iter", tunnel=False).get_child_by_name("attributes-list").get_children()
    assert [(n["node-name"], n["is-node-healthy"]) for n in nodes] == [("lab2-01", "true")]
    aggrs = zcall(cluster, "aggr-get-iter", tunnel=False).get_child_by_name("attributes-list").get_children()
    assert [a["aggregate-name"] for a in aggrs] == ["aggr1"]
    with pytest.raises(zapi.NaApiError) as err:  # cluster-scoped, as on ONTAP
        zcall(svm1, "aggr-get-iter")
    assert err.value.code == "13005"


# -- the simulator's own records use ONTAP's field names only ---------------------------------------------------
def _dotted(rec, prefix=""):
    for key, value in rec.items():
        if key == "_links":
            continue
        yield prefix + key
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict) and not prefix:
                yield from _dotted(item, key + ".")


def test_every_record_field_is_an_ontap_field(lab):
    """Each REST record the simulator serves, with fields=**, names only fields ONTAP's schema has
    (fields.json), so a client cannot come to rely on a field that only the simulator invents."""
    vol = lab.volume("vol_ds1")
    lab.create_snapshot(vol["uuid"], "s1", comment="c", snapmirror_label="daily")
    lab.post("/api/application/consistency-groups", {"name": "cg", "svm": {"name": "svm1"}, "volumes": [
        {"name": "vol_ds2", "provisioning_options": {"action": "add"}}]}, query={"return_timeout": 30})
    cg = lab.get("/api/application/consistency-groups")["records"][0]["uuid"]
    lab.post(f"/api/application/consistency-groups/{cg}/snapshots", {"name": "cgs", "comment": "c"},
             query={"return_timeout": 30})
    rel = lab.get("/api/snapmirror/relationships", destination__path="svm_dr:vol_ds1_vault")["records"][0]["uuid"]
    lab.post(f"/api/snapmirror/relationships/{rel}/transfers", {}, query={"return_timeout": 30})
    paths = ["/api/cluster", "/api/cluster/nodes", "/api/cluster/jobs", "/api/cluster/software", "/api/svm/svms",
             "/api/svm/peers", "/api/network/ip/interfaces", "/api/storage/aggregates", "/api/storage/volumes",
             f"/api/storage/volumes/{vol['uuid']}/snapshots", "/api/storage/luns", "/api/snapmirror/relationships",
             f"/api/snapmirror/relationships/{rel}/transfers", "/api/snapmirror/policies",
             "/api/application/consistency-groups", f"/api/application/consistency-groups/{cg}/snapshots",
             "/api/security/accounts", "/api/security/roles"]
    checked = 0
    for path in paths:
        body = lab.get(path, fields="**").body
        for rec in body.get("records", [body]):
            names = sorted(set(_dotted(rec)))
            # Asking for exactly the names the record has must pass the simulator's own field check.
            r = lab.get(path, fields=",".join(names))
            assert r.status == 200, (path, r)
            checked += len(names)
    assert checked > 100
