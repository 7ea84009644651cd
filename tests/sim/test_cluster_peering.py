"""Two peered clusters (one simulator process each): cluster and SVM peers, a SnapVault relationship held by
the DR cluster whose source is the primary's volume, its transfer (only on the destination cluster), and a
restore relationship on the primary that reads the DR cluster's vault."""

from __future__ import annotations

import pytest
from helpers.peer_fixtures import DR, PRIMARY, peered_configs
from simapi import Client

REL = "/api/snapmirror/relationships"


@pytest.fixture
def sites(fast_sim, tmp_path):
    primary_cfg, dr_cfg = peered_configs(tmp_path / "primary", tmp_path / "dr")
    dr = fast_sim(dr_cfg, name="dr")
    primary = fast_sim(primary_cfg, name="primary")
    return Client(primary), Client(dr)


def _write(c: Client, vol: str, name: str, text: str, svm: str = "svm1") -> None:
    (c.sim.data / "volumes" / svm / vol / name).write_text(text)


def _read(c: Client, vol: str, name: str, svm: str = "svm1", snapshot: str | None = None) -> str:
    base = c.sim.data / "volumes" / svm / vol
    return ((base / ".snapshot" / snapshot if snapshot else base) / name).read_text()


def test_peers_and_relationship_ownership(sites):
    primary, dr = sites
    for here, there in ((primary, DR), (dr, PRIMARY)):
        peers = here.get("/api/cluster/peers", fields="name,remote,status")["records"]
        assert [(p["name"], p["remote"]["name"], p["status"]["state"]) for p in peers] == [(there, there, "available")]
        one = here.get(f"/api/cluster/peers/{peers[0]['uuid']}")
        assert one.status == 200 and one["name"] == there
    svm_peers = primary.get("/api/svm/peers", fields="svm,peer,state,applications")["records"]
    assert [(p["svm"]["name"], p["peer"]["svm"]["name"], p["peer"]["cluster"]["name"], p["state"])
            for p in svm_peers] == [("svm1", "svm_dr", DR, "peered")]
    assert svm_peers[0]["applications"] == ["snapmirror"]
    # The relationship lives on the destination cluster and names its source's cluster.
    held = dr.get(REL, fields="source,destination,policy,state")["records"]
    assert [(r["source"]["path"], r["source"]["cluster"]["name"], r["destination"]["path"]) for r in held] == \
        [("svm1:vol_ds1", PRIMARY, "svm_dr:vol_ds1_vault")]
    # The source cluster sees it only with list_destinations_only=true (same uuid, the destination's cluster).
    assert primary.get(REL)["num_records"] == 0
    seen = primary.get(REL, list_destinations_only="true", fields="source,destination")["records"]
    assert [(r["uuid"], r["destination"]["path"], r["destination"]["cluster"]["name"]) for r in seen] == \
        [(held[0]["uuid"], "svm_dr:vol_ds1_vault", DR)]
    filtered = primary.get(REL, list_destinations_only="true", **{"source.path": "svm1:vol_ds1"})
    assert filtered["num_records"] == 1
    one = primary.get(f"{REL}/{held[0]['uuid']}", list_destinations_only="true")
    assert one.status == 200 and one["destination"]["cluster"]["name"] == DR
    assert primary.get(f"{REL}/{held[0]['uuid']}").status == 400


def test_vault_update_on_destination_then_restore_on_primary(sites):
    primary, dr = sites
    _write(primary, "vol_ds1", "a.img", "one")
    _write(primary, "vol_ds1", "b.img", "bee")
    vol = primary.volume("vol_ds1")
    assert primary.create_snapshot(vol["uuid"], "s1", snapmirror_label="daily").status in (201, 202)
    assert primary.create_snapshot(vol["uuid"], "s_unlabelled").status in (201, 202)
    ru = dr.get(REL)["records"][0]["uuid"]
    # The source cluster cannot start the transfer: the relationship belongs to the DR cluster.
    refused = primary.post(f"{REL}/{ru}/transfers", {})
    assert refused.status == 400 and refused["error"]["code"] == "13303844", refused
    assert DR in refused["error"]["message"]
    # On the destination cluster the update pulls the labelled snapshot (vault policy) from the peer.
    x = dr.post(f"{REL}/{ru}/transfers", {}, query={"return_timeout": 10})
    assert x.status == 201 and dr.job(x)["state"] == "success", x
    vault = dr.volume("vol_ds1_vault", svm="svm_dr")
    snaps = dr.snapshots(vault["uuid"])
    assert [(s["name"], s.get("snapmirror_label")) for s in snaps] == [("s1", "daily")]
    assert _read(dr, "vol_ds1_vault", "a.img", svm="svm_dr", snapshot="s1") == "one"
    rel = dr.get(f"{REL}/{ru}", fields="state,healthy,transfer")
    assert rel["state"] == "snapmirrored" and rel["healthy"] is True and rel["transfer"]["state"] == "success"
    # The primary changes and loses s1; the DR vault keeps it.
    _write(primary, "vol_ds1", "a.img", "two")
    _write(primary, "vol_ds1", "b.img", "changed")
    s1 = primary.snapshots(vol["uuid"], name="s1")[0]
    assert primary.job(primary.delete(f"/api/storage/volumes/{vol['uuid']}/snapshots/{s1['uuid']}"))["state"] == \
        "success"
    # A restore relationship on the PRIMARY, its source the peer's vault.
    r = primary.post(REL, {"source": {"path": "svm_dr:vol_ds1_vault"}, "destination": {"path": "svm1:vol_ds1"},
                           "restore": True}, query={"return_timeout": 10})
    assert r.status == 201, r
    restore = primary.get(REL, restore="true", fields="source,destination,restore")["records"]
    assert [(x["source"]["path"], x["source"]["cluster"]["name"], x["destination"]["path"]) for x in restore] == \
        [("svm_dr:vol_ds1_vault", DR, "svm1:vol_ds1")]
    rru = restore[0]["uuid"]
    # the same rules as on one cluster: a file the snapshot lacks fails the job, nothing is written
    bad = primary.post(f"{REL}/{rru}/transfers", {"source_snapshot": "s1", "files": [
        {"source_path": "/a.img", "destination_path": "/a.img"},
        {"source_path": "/nope.img", "destination_path": "/nope.img"}]}, query={"return_timeout": 10})
    assert bad.status >= 400 and "nope.img" in bad["error"]["message"], bad
    assert _read(primary, "vol_ds1", "a.img") == "two"
    missing = primary.post(f"{REL}/{rru}/transfers", {"source_snapshot": "s9", "files": [
        {"source_path": "/a.img", "destination_path": "/a.img"}]}, query={"return_timeout": 10})
    assert missing.status >= 400 and "s9" in missing["error"]["message"] and DR in missing["error"]["message"]
    ok = primary.post(f"{REL}/{rru}/transfers", {"source_snapshot": "s1", "files": [
        {"source_path": "/a.img", "destination_path": "/a.img"}]}, query={"return_timeout": 10})
    assert ok.status == 201 and primary.job(ok)["state"] == "success", ok
    assert _read(primary, "vol_ds1", "a.img") == "one"
    assert _read(primary, "vol_ds1", "b.img") == "changed"  # only the listed file
    d = primary.delete(f"{REL}/{rru}", query={"return_timeout": 10})
    assert d.status == 200 and not primary.get(REL, restore="true")["records"]


def test_unpeered_source_and_unavailable_peer(sites):
    primary, dr = sites
    # svm_other exists on the DR cluster but is not peered with svm1: refused before any job.
    r = primary.post(REL, {"source": {"path": "svm_other:vol_other"}, "destination": {"path": "svm1:vol_ds1"},
                           "restore": True})
    assert r.status == 400 and r["error"]["code"] == "13303845" and r["error"]["target"] == "source.path", r
    assert "not peered" in r["error"]["message"] and "svm1" in r["error"]["message"]
    r = primary.post(REL, {"source": {"path": "svm_dr:vol_none"}, "destination": {"path": "svm1:vol_ds1"},
                           "restore": True})
    assert r.status == 404 and DR in r["error"]["message"], r
    # A peer that is down: its cluster peer is unavailable, and what needs it fails naming it.
    dr.sim.stop()
    peers = primary.get("/api/cluster/peers", fields="status")["records"]
    assert peers[0]["status"]["state"] == "unavailable"
    r = primary.post(REL, {"source": {"path": "svm_dr:vol_ds1_vault"}, "destination": {"path": "svm1:vol_ds1"},
                           "restore": True})
    assert r.status == 400 and "not reachable" in r["error"]["message"] and DR in r["error"]["message"], r
    assert primary.get(REL, list_destinations_only="true")["num_records"] == 0
