"""Consistency groups (9.10.1+ only) and SnapMirror/SnapVault relationships and transfers."""

from __future__ import annotations

import re
import time

from simapi import LAB_CONFIG, Client, with_version

CG = "/api/application/consistency-groups"


def _make_cg(c: Client, name: str = "cg1", vols=("vol_ds1", "vol_ds2")) -> str:
    r = c.post(CG, {"name": name, "svm": {"name": "svm1"},
                    "volumes": [{"name": v, "provisioning_options": {"action": "add"}} for v in vols]})
    assert r.status == 202, r
    assert c.job(r)["state"] == "success"
    return c.call("GET", r.headers["Location"]).body["uuid"]


def test_cg_create_snapshot_one_create_time_and_delete_keeps_volumes(lab):
    cu = _make_cg(lab)
    cg = lab.get(f"{CG}/{cu}", fields="name,volumes,svm").body
    assert cg["name"] == "cg1" and sorted(v["name"] for v in cg["volumes"]) == ["vol_ds1", "vol_ds2"]
    r = lab.post(f"{CG}/{cu}/snapshots", {"name": "cgs1", "comment": "c", "snapmirror_label": "daily"})
    assert r.status == 202 and lab.job(r)["state"] == "success"
    assert r.headers["Location"].endswith("/snapshots?name=cgs1")
    recs = lab.get(f"{CG}/{cu}/snapshots", fields="*")["records"]
    assert recs[0]["name"] == "cgs1" and recs[0]["consistency_group"]["name"] == "cg1"
    times = set()
    for v in ("vol_ds1", "vol_ds2"):
        snap = lab.snapshots(lab.volume(v)["uuid"], name="cgs1")[0]
        assert snap["snapmirror_label"] == "daily"
        times.add(snap["create_time"])
    assert len(times) == 1
    dup = lab.post(f"{CG}/{cu}/snapshots", {"name": "cgs1"}, query={"return_timeout": 10})
    assert dup.status == 409 and dup["error"]["code"] == "53411921"
    r = lab.delete(f"{CG}/{cu}")
    assert r.status == 202 and lab.job(r)["state"] == "success"
    assert lab.get(CG)["num_records"] == 0
    assert lab.snapshots(lab.volume("vol_ds1")["uuid"], name="cgs1")


def test_cg_volume_in_one_group_only_and_action_add_required(lab):
    _make_cg(lab, "cg1", ("vol_ds1",))
    r = lab.post(CG, {"name": "cg2", "svm": {"name": "svm1"},
                      "volumes": [{"name": "vol_ds1", "provisioning_options": {"action": "add"}}]},
                 query={"return_timeout": 10})
    assert r.status == 409 and r["error"]["code"] == "8"
    r = lab.post(CG, {"name": "cg3", "svm": {"name": "svm1"}, "volumes": [{"name": "vol_ds2"}]})
    assert r.status == 400


def test_cg_snapshot_delete_removes_member_snapshots(lab):
    cu = _make_cg(lab)
    lab.post(f"{CG}/{cu}/snapshots", {"name": "s"}, query={"return_timeout": 10})
    su = lab.get(f"{CG}/{cu}/snapshots")["records"][0]["uuid"]
    assert lab.get(f"{CG}/{cu}/snapshots/{su}")["name"] == "s"
    assert lab.job(lab.delete(f"{CG}/{cu}/snapshots/{su}"))["state"] == "success"
    assert not lab.snapshots(lab.volume("vol_ds2")["uuid"], name="s")


def test_no_cg_api_on_98(fast_sim):
    c = Client(fast_sim(with_version("9.8.0")))
    r = c.get(CG)
    assert r.status == 404 and r["error"]["code"] == "4"
    r = c.post(CG, {"name": "x"})
    assert r.status == 404


def test_relationship_records_and_filters(lab):
    r = lab.get("/api/snapmirror/relationships", fields="*")
    assert r["num_records"] == 2
    rec = lab.get("/api/snapmirror/relationships", destination__path="svm_dr:vol_ds1_vault",
                  fields="source.path,destination.path,policy,state,healthy,transfer,lag_time")["records"][0]
    assert rec["source"]["path"] == "svm1:vol_ds1" and rec["policy"]["name"] == "vault_daily"
    assert rec["policy"]["type"] == "async" and rec["state"] == "snapmirrored" and rec["healthy"] is True
    assert lab.get("/api/snapmirror/relationships", source__path="svm1:vol_ds2",
                   list_destinations_only="true")["num_records"] == 1
    dst = lab.volume("vol_ds1_vault", svm="svm_dr")
    assert dst["type"] == "dp"
    pol = lab.get("/api/snapmirror/policies", name="vault_daily", fields="type,retention,create_snapshot_on_source")
    p = pol["records"][0]
    assert p["retention"] == [{"label": "daily", "count": "2"}] and p["create_snapshot_on_source"] is False


def test_vault_transfer_copies_labelled_snapshots_only(lab):
    src = lab.volume("vol_ds1")
    vdir = lab.sim.data / "volumes" / "svm1" / "vol_ds1"
    (vdir / "d.img").write_text("day1")
    lab.create_snapshot(src["uuid"], "d1", snapmirror_label="daily")
    (vdir / "d.img").write_text("other")
    lab.create_snapshot(src["uuid"], "nolabel")
    rel = lab.get("/api/snapmirror/relationships", destination__path="svm_dr:vol_ds1_vault")["records"][0]
    r = lab.post(f"/api/snapmirror/relationships/{rel['uuid']}/transfers", {})
    assert r.status == 202 and lab.job(r)["state"] == "success"
    assert "/transfers/" in r.headers["Location"]
    dst = lab.volume("vol_ds1_vault", svm="svm_dr")
    assert [s["name"] for s in lab.snapshots(dst["uuid"])] == ["d1"]
    ddir = lab.sim.data / "volumes" / "svm_dr" / "vol_ds1_vault"
    assert (ddir / ".snapshot" / "d1" / "d.img").read_text() == "day1"
    assert (ddir / "d.img").read_text() == "day1"
    # Retention on the vault: count 2 for "daily".
    for n in ("d2", "d3"):
        lab.create_snapshot(src["uuid"], n, snapmirror_label="daily")
    r = lab.post(f"/api/snapmirror/relationships/{rel['uuid']}/transfers", {}, query={"return_timeout": 10})
    assert r.status == 201
    assert [s["name"] for s in lab.snapshots(dst["uuid"])] == ["d2", "d3"]
    rec = lab.get(f"/api/snapmirror/relationships/{rel['uuid']}", fields="transfer,lag_time").body
    assert rec["transfer"]["state"] == "success" and re.match(r"^P(\d+D)?T\d+H\d+M\d+S$", rec["lag_time"])
    xfers = lab.get(f"/api/snapmirror/relationships/{rel['uuid']}/transfers", fields="*")["records"]
    assert len(xfers) == 2 and xfers[-1]["state"] == "success"


def test_mirror_transfer_copies_all_and_source_snapshot(lab):
    src = lab.volume("vol_ds2")
    lab.create_snapshot(src["uuid"], "a")
    lab.create_snapshot(src["uuid"], "b", snapmirror_label="weekly")
    rel = lab.get("/api/snapmirror/relationships", destination__path="svm_dr:vol_ds2_mirror")["records"][0]
    assert lab.job(lab.post(f"/api/snapmirror/relationships/{rel['uuid']}/transfers", {}))["state"] == "success"
    dst = lab.volume("vol_ds2_mirror", svm="svm_dr")
    assert [s["name"] for s in lab.snapshots(dst["uuid"])] == ["a", "b"]
    lab.create_snapshot(src["uuid"], "c")
    r = lab.post(f"/api/snapmirror/relationships/{rel['uuid']}/transfers", {"source_snapshot": "c"})
    assert lab.job(r)["state"] == "success"
    assert [s["name"] for s in lab.snapshots(dst["uuid"])] == ["a", "b", "c"]
    r = lab.post(f"/api/snapmirror/relationships/{rel['uuid']}/transfers", {"source_snapshot": "zz"},
                 query={"return_timeout": 5})
    assert r.status == 404


def test_transfer_needs_snapmirror_update_right(lab):
    viewer = Client(lab.sim, user="viewer", password="v")
    rel = viewer.get("/api/snapmirror/relationships")["records"][0]
    assert viewer.post(f"/api/snapmirror/relationships/{rel['uuid']}/transfers", {}).status == 403


def test_no_snapshot_create_on_dp_destination(lab):
    dst = lab.volume("vol_ds1_vault", svm="svm_dr")
    r = lab.create_snapshot(dst["uuid"], "x")
    assert r.status == 405 and r["error"]["code"] == "3" and "DP" in r["error"]["message"]


def test_tunnelled_lif_listing_hides_cluster_lifs(lab):
    r = lab.call("GET", "/api/network/ip/interfaces", query={"fields": "svm.name,ip.address"},
                 headers={"X-Dot-SVM-Name": "svm_dr"})
    assert [x["ip"]["address"] for x in r["records"]] == ["127.0.0.2"]


def test_no_volume_restore_on_dp_destination(lab):
    src = lab.volume("vol_ds2")
    lab.create_snapshot(src["uuid"], "a")
    rel = lab.get("/api/snapmirror/relationships", destination__path="svm_dr:vol_ds2_mirror")["records"][0]
    lab.post(f"/api/snapmirror/relationships/{rel['uuid']}/transfers", {}, query={"return_timeout": 10})
    dst = lab.volume("vol_ds2_mirror", svm="svm_dr")
    r = lab.patch(f"/api/storage/volumes/{dst['uuid']}", {},
                  query={"restore_to.snapshot.name": "a", "return_timeout": 10})
    assert r.status == 409 and "mirror" in r["error"]["message"]


def test_broken_off_relationship_transfer_fails_and_turns_unhealthy(fast_sim):
    cfg = {"svms": [{"name": "svm1", "data_lifs": ["127.0.0.1"]}],
           "volumes": [{"name": "src", "svm": "svm1"}],
           "relationships": [{"source": "svm1:src", "destination": "svm1:dst", "state": "broken_off"}]}
    c = Client(fast_sim(cfg))
    rel = c.get("/api/snapmirror/relationships", fields="state,healthy")["records"][0]
    assert rel["state"] == "broken_off" and rel["healthy"] is True
    r = c.post(f"/api/snapmirror/relationships/{rel['uuid']}/transfers", {})
    job = c.job(r)
    assert job["state"] == "failure" and job["code"] == 13303844
    rel = c.get(f"/api/snapmirror/relationships/{rel['uuid']}", fields="healthy,unhealthy_reason,transfer").body
    assert rel["healthy"] is False and "broken off" in rel["unhealthy_reason"][0]["message"]
    assert rel["transfer"]["state"] == "failed"


def test_cg_two_phase_snapshot_start_commit(lab):
    cu = _make_cg(lab)
    r = lab.post(f"{CG}/{cu}/snapshots", {"name": "tp"}, query={"action": "start", "action_timeout": 10,
                                                                "return_timeout": 10})
    assert r.status == 201
    rec = lab.get(f"{CG}/{cu}/snapshots", name="tp", fields="*")["records"][0]
    assert rec["state"] == "pending_commit"
    r = lab.patch(f"{CG}/{cu}/snapshots/{rec['uuid']}", {}, query={"action": "commit", "return_timeout": 10})
    assert r.status == 200
    assert "state" not in lab.get(f"{CG}/{cu}/snapshots/{rec['uuid']}").body
    again = lab.patch(f"{CG}/{cu}/snapshots/{rec['uuid']}", {}, query={"action": "commit", "return_timeout": 10})
    assert again.status == 400
    assert len(lab.snapshots(lab.volume("vol_ds2")["uuid"], name="tp")) == 1


def test_cg_two_phase_commit_too_late_and_version_gate(fast_sim):
    cfg = dict(LAB_CONFIG, options={"cg_fence_scale": 0.02})  # 10 s -> 0.2 s
    c = Client(fast_sim(cfg))
    cu = _make_cg(c)
    c.post(f"{CG}/{cu}/snapshots", {"name": "late"}, query={"action": "start", "action_timeout": 10})
    su = c.get(f"{CG}/{cu}/snapshots", name="late")["records"][0]["uuid"]
    time.sleep(0.3)
    r = c.patch(f"{CG}/{cu}/snapshots/{su}", {}, query={"action": "commit", "return_timeout": 10})
    assert r.status == 400 and "action_timeout expired" in r["error"]["message"]
    assert not c.snapshots(c.volume("vol_ds1")["uuid"], name="late")
    old = Client(fast_sim(with_version("9.10.1"), name="old"))
    cu = _make_cg(old)
    r = old.post(f"{CG}/{cu}/snapshots", {"name": "x"}, query={"action": "start"})
    assert r.status == 400 and r["error"]["code"] == "262179"
