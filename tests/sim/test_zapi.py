"""ZAPI through the real netapp-lib client (NaServer over HTTPS, challenge/response basic auth)."""

from __future__ import annotations

import time

import pytest
from netapp_lib.api.zapi import zapi
from simapi import LAB_CONFIG, Client, with_version, zapi_server, zcall, zelem


@pytest.fixture
def zl(lab, monkeypatch):
    """(REST client, NaServer tunnelled to svm1) on the reset LAB cluster."""
    monkeypatch.setenv("SSL_CERT_FILE", lab.sim.ca_file)
    return lab, zapi_server(lab.sim, vserver="svm1")


def _snap_infos(server, **query) -> list[zapi.NaElement]:
    el = zelem("snapshot-get-iter", {"max-records": "100", "query": {"snapshot-info": query}} if query
               else {"max-records": "100"})
    res = server.invoke_successfully(el, enable_tunneling=True)
    al = res.get_child_by_name("attributes-list")
    return al.get_children() if al is not None else []


def test_challenge_round_trip_and_version(zl):
    lab, server = zl
    lab.admin("DELETE", "calls")
    res = zcall(server, "system-get-version", tunnel=False)
    assert res.get_child_content("version").startswith("NetApp Release 9.13.1:")
    tup = res.get_child_by_name("version-tuple").get_child_by_name("system-version-tuple")
    assert (tup["generation"], tup["major"], tup["minor"]) == ("9", "13", "1")
    calls = [c for c in lab.calls() if c["api"] == "system-get-version"]
    # Plain netapp-lib sends no credentials until challenged.
    assert [(c["user"], c["status"]) for c in calls] == [(None, 401), ("admin", 200)]
    ontapi = zcall(server, "system-get-ontapi-version", tunnel=False)
    assert ontapi["major-version"] == "1" and int(ontapi["minor-version"]) >= 180


def test_version_98(fast_sim, monkeypatch):
    sim = fast_sim(with_version("9.8.0"))
    monkeypatch.setenv("SSL_CERT_FILE", sim.ca_file)
    res = zcall(zapi_server(sim), "system-get-version", tunnel=False)
    assert res["version"].startswith("NetApp Release 9.8:")
    assert res.get_child_by_name("version-tuple").get_child_by_name("system-version-tuple")["major"] == "8"


def test_wrong_password_is_401(zl):
    lab = zl[0]
    bad = zapi_server(lab.sim, password="wrong")
    with pytest.raises(zapi.NaApiError) as exc:
        zcall(bad, "system-get-version", tunnel=False)
    assert str(exc.value.code) == "401"


def test_tunnelling_rules(zl):
    lab, server = zl
    dr = zapi_server(lab.sim, vserver="svm_dr")
    res = zcall(dr, "volume-get-iter")
    names = {v.get_child_by_name("volume-id-attributes")["name"] for v in res.get_child_by_name("attributes-list")
             .get_children()}
    assert names == {"vol_ds1_vault", "vol_ds2_mirror"}
    cluster = zcall(server, "volume-get-iter", tunnel=False)
    assert int(cluster["num-records"]) == 5
    with pytest.raises(zapi.NaApiError) as exc:
        zcall(server, "cluster-identity-get")
    assert exc.value.code == "13005"
    assert exc.value.message == "Unable to find API: cluster-identity-get on data vserver svm1"
    assert zcall(server, "cluster-identity-get", tunnel=False)
    with pytest.raises(zapi.NaApiError) as exc:
        zcall(server, "snapshot-create", tunnel=False, volume="vol_ds1", snapshot="s")
    assert exc.value.code == "13001" and exc.value.message == "Vserver API missing vserver parameter."
    with pytest.raises(zapi.NaApiError) as exc:
        zcall(zapi_server(lab.sim, vserver="nosuch"), "volume-get-iter")
    assert exc.value.code == "15698" and exc.value.message == "Specified vserver not found"
    with pytest.raises(zapi.NaApiError) as exc:
        zcall(server, "no-such-api")
    assert exc.value.code == "13005"
    calls = lab.calls()
    assert any(c["vfiler"] == "svm_dr" and c["api"] == "volume-get-iter" for c in calls)


def test_volume_get_iter_queries(zl):
    lab, server = zl
    q = {"query": {"volume-attributes": {"volume-id-attributes": {"name": "vol_ds1",
                                                                  "owning-vserver-name": "svm1"}}}}
    res = server.invoke_successfully(zelem("volume-get-iter", q), enable_tunneling=False)
    vol = res.get_child_by_name("attributes-list").get_children()[0]
    ida = vol.get_child_by_name("volume-id-attributes")
    assert ida["junction-path"] == "/vol_ds1" and ida["owning-vserver-name"] == "svm1"
    assert ida["instance-uuid"] == lab.volume("vol_ds1")["uuid"]
    assert int(vol.get_child_by_name("volume-space-attributes")["size"]) == 1024 ** 3
    # na_ontap_volume's form: <vserver> in volume-id-attributes.
    q = {"query": {"volume-attributes": {"volume-id-attributes": {"vserver": "svm_dr"}}}}
    res = server.invoke_successfully(zelem("volume-get-iter", q), enable_tunneling=False)
    assert res["num-records"] == "2"
    q = {"query": {"volume-attributes": {"volume-id-attributes": {"junction-path": "/vol_ds2"}}}}
    assert server.invoke_successfully(zelem("volume-get-iter", q))["num-records"] == "1"
    san = server.invoke_successfully(zelem("volume-get-iter", {"query": {"volume-attributes": {
        "volume-id-attributes": {"name": "vol_san"}}}}))
    ida = san.get_child_by_name("attributes-list").get_children()[0].get_child_by_name("volume-id-attributes")
    assert ida.get_child_by_name("junction-path") is None


def test_snapshot_create_get_paging_and_errors(zl):
    lab, server = zl
    for i in range(5):
        zcall(server, "snapshot-create", volume="vol_ds1", snapshot=f"z{i}", comment="kvmsnap:v1",
              **{"snapmirror-label": "daily"})
    info = _snap_infos(server, name="z0")[0]
    assert info["volume"] == "vol_ds1" and info["vserver"] == "svm1" and info["comment"] == "kvmsnap:v1"
    assert info["snapmirror-label"] == "daily" and info["busy"] == "false"
    rest = lab.snapshots(lab.volume("vol_ds1")["uuid"], name="z0")[0]
    assert info["snapshot-instance-uuid"] == rest["uuid"]
    import datetime as dt
    assert int(info["access-time"]) == int(dt.datetime.fromisoformat(rest["create_time"]).timestamp())
    # Paging with max-records / tag / next-tag.
    seen, tag, pages = [], None, 0
    while True:
        args = {"max-records": "2", "query": {"snapshot-info": {"volume": "vol_ds1"}}}
        if tag:
            args["tag"] = tag
        res = server.invoke_successfully(zelem("snapshot-get-iter", args), enable_tunneling=True)
        pages += 1
        al = res.get_child_by_name("attributes-list")
        seen += [s["name"] for s in (al.get_children() if al is not None else [])]
        assert int(res["num-records"]) == (len(al.get_children()) if al is not None else 0)
        tag = res.get_child_content("next-tag")
        if not tag:
            break
    assert seen == [f"z{i}" for i in range(5)] and pages == 3
    # netapp-lib's own iterator helper (pages of 50, follows next-tag).
    out = zapi.invoke_api(server, "snapshot-get-iter", is_iter=True, tunnel="svm1")
    assert sum(int(r.get_child_content("num-records")) for r in out) == 5
    with pytest.raises(zapi.NaApiError) as exc:
        zcall(server, "snapshot-create", volume="vol_ds1", snapshot="z0")
    assert exc.value.code == "13020" and "already exists" in exc.value.message
    with pytest.raises(zapi.NaApiError) as exc:
        zcall(server, "snapshot-create", volume="nosuch", snapshot="x")
    assert exc.value.code == "13040"
    zcall(server, "snapshot-rename", volume="vol_ds1", **{"current-name": "z1", "new-name": "r1"})
    zcall(server, "snapshot-delete", volume="vol_ds1", snapshot="z2")
    assert [s["name"] for s in _snap_infos(server)] == ["z0", "r1", "z3", "z4"]
    with pytest.raises(zapi.NaApiError) as exc:
        zcall(server, "snapshot-delete", volume="vol_ds1", snapshot="z2")
    assert exc.value.code == "13021"


def test_snapshot_modify_iter_sets_comment_and_label(zl):
    lab, server = zl
    zcall(server, "snapshot-create", volume="vol_ds1", snapshot="m")
    zcall(server, "snapshot-create", volume="vol_ds2", snapshot="m")
    args = {"query": {"snapshot-info": {"name": "m", "volume": "vol_ds1", "vserver": "svm1"}},
            "attributes": {"snapshot-info": {"comment": "kvmsnap:v1 policy=daily", "snapmirror-label": "daily"}}}
    res = server.invoke_successfully(zelem("snapshot-modify-iter", args), enable_tunneling=True)
    assert res["num-succeeded"] == "1" and res["num-failed"] == "0"
    key = res.get_child_by_name("success-list").get_children()[0].get_child_by_name("snapshot-key")
    assert key.get_child_by_name("snapshot-info")["volume"] == "vol_ds1"
    info = {s["volume"]: s for s in _snap_infos(server, name="m")}
    assert info["vol_ds1"]["comment"] == "kvmsnap:v1 policy=daily" and info["vol_ds1"]["snapmirror-label"] == "daily"
    assert info["vol_ds2"].get_child_by_name("comment") is None
    # Cluster scope works too (the query names the vserver).
    res = server.invoke_successfully(zelem("snapshot-modify-iter", {
        "query": {"snapshot-info": {"name": "m", "vserver": "svm1"}},
        "attributes": {"snapshot-info": {"comment": "both"}}}), enable_tunneling=False)
    assert res["num-succeeded"] == "2"


def test_busy_snapshot_and_privileges(zl):
    lab, server = zl
    zcall(server, "snapshot-create", volume="vol_ds1", snapshot="b1")
    lab.admin("POST", "busy", {"svm": "svm1", "volume": "vol_ds1", "snapshot": "b1", "owners": ["snapmirror"]})
    info = _snap_infos(server, name="b1")[0]
    assert info["busy"] == "true"
    owners = info.get_child_by_name("snapshot-owners-list").get_children()
    assert [o["owner"] for o in owners] == ["snapmirror"]
    with pytest.raises(zapi.NaApiError) as exc:
        zcall(server, "snapshot-delete", volume="vol_ds1", snapshot="b1")
    assert exc.value.code == "13024"
    viewer = zapi_server(lab.sim, vserver="svm1", user="viewer", password="v")
    assert _snap_infos(viewer, name="b1")
    with pytest.raises(zapi.NaApiError) as exc:
        zcall(viewer, "snapshot-create", volume="vol_ds1", snapshot="v1")
    assert exc.value.code == "13003"
    assert exc.value.message == "Insufficient privileges: user 'viewer' does not have write access to this resource"
    backup = zapi_server(lab.sim, vserver="svm1", user="backup", password="b")
    with pytest.raises(zapi.NaApiError) as exc:
        zcall(backup, "snapshot-restore-volume", volume="vol_ds1", snapshot="b1")
    assert exc.value.code == "13003"


def _multicreate(server, vols, snap, cleanup=None):
    args = {"volume-names": [{"volume-name": v} for v in vols], "snapshot": snap}
    if cleanup is not None:
        args["cleanup"] = "true" if cleanup else "false"
    return server.invoke_successfully(zelem("snapshot-multicreate", args), enable_tunneling=True)


def test_snapshot_multicreate(zl):
    lab, server = zl
    res = _multicreate(server, ["vol_ds1", "vol_ds2"], "m1")
    assert res["status"] == "true"
    flags = {e["name"]: e["is-snapcreated"] for e in res.get_child_by_name("volume-is-snapcreated-list").get_children()}
    assert flags == {"vol_ds1": "true", "vol_ds2": "true"}
    times = {s["access-time"] for s in _snap_infos(server, name="m1")}
    assert len(times) == 1
    res = _multicreate(server, ["vol_ds1", "nosuch"], "m2")
    assert res["status"] == "false" and not _snap_infos(server, name="m2")
    err = res.get_child_by_name("volume-errors").get_children()[0]
    assert err["name"] == "nosuch" and err["errno"] == "13040" and err["vserver"] == "svm1"
    res = _multicreate(server, ["vol_ds1", "nosuch"], "m3", cleanup=False)
    assert res["status"] == "false" and [s["volume"] for s in _snap_infos(server, name="m3")] == ["vol_ds1"]


def test_cg_start_commit_and_timeout(zl):
    lab, server = zl
    start = zelem("cg-start", {"snapshot": "cg1", "timeout": "medium", "snapmirror-label": "daily",
                               "volumes": [{"volume-name": "vol_ds1"}, {"volume-name": "vol_ds2"}]})
    cg_id = server.invoke_successfully(start, enable_tunneling=True)["cg-id"]
    zcall(server, "cg-commit", **{"cg-id": cg_id})
    snaps = _snap_infos(server, name="cg1")
    assert sorted(s["volume"] for s in snaps) == ["vol_ds1", "vol_ds2"]
    assert len({s["access-time"] for s in snaps}) == 1 and {s["snapmirror-label"] for s in snaps} == {"daily"}
    with pytest.raises(zapi.NaApiError):
        zcall(server, "cg-commit", **{"cg-id": cg_id})  # already committed
    bad = zelem("cg-start", {"snapshot": "cg2", "timeout": "urgent", "user-timeout": "10",
                             "volumes": [{"volume-name": "vol_ds1"}]})
    with pytest.raises(zapi.NaApiError) as exc:
        server.invoke_successfully(bad, enable_tunneling=True)  # timeout and user-timeout are exclusive
    assert exc.value.code == "13115"
    bad = zelem("cg-start", {"snapshot": "cg2", "user-timeout": "1", "volumes": [{"volume-name": "vol_ds1"}]})
    with pytest.raises(zapi.NaApiError):
        server.invoke_successfully(bad, enable_tunneling=True)  # below the "urgent" 5 s minimum


def test_cg_commit_after_fence_timeout_fails(fast_sim, monkeypatch):
    cfg = dict(LAB_CONFIG, options={"cg_fence_scale": 0.05})  # urgent 5 s -> 0.25 s
    sim = fast_sim(cfg)
    monkeypatch.setenv("SSL_CERT_FILE", sim.ca_file)
    server = zapi_server(sim, vserver="svm1")
    start = zelem("cg-start", {"snapshot": "cg2", "timeout": "urgent", "volumes": [{"volume-name": "vol_ds1"}]})
    cg_id = server.invoke_successfully(start, enable_tunneling=True)["cg-id"]
    assert _snap_infos(server, name="cg2")
    time.sleep(0.4)
    with pytest.raises(zapi.NaApiError) as exc:
        zcall(server, "cg-commit", **{"cg-id": cg_id})
    assert exc.value.code == "13701" and "timed out" in exc.value.message
    assert not _snap_infos(server, name="cg2")


def test_restore_file_and_volume(zl):
    lab, server = zl
    vdir = lab.sim.data / "volumes" / "svm1" / "vol_ds1"
    (vdir / "d.img").write_text("v1")
    zcall(server, "snapshot-create", volume="vol_ds1", snapshot="s1")
    zcall(server, "snapshot-create", volume="vol_ds1", snapshot="s2")
    (vdir / "d.img").write_text("v2")
    zcall(server, "snapshot-restore-file", snapshot="s1", path="/vol/vol_ds1/d.img")
    assert (vdir / "d.img").read_text() == "v1"
    (vdir / "d.img").write_text("v3")
    zcall(server, "snapshot-restore-file", snapshot="s1", path="/d.img", volume="vol_ds1",
          **{"restore-path": "/vol/vol_ds1/copy.img"})
    assert (vdir / "copy.img").read_text() == "v1" and (vdir / "d.img").read_text() == "v3"
    with pytest.raises(zapi.NaApiError) as exc:
        zcall(server, "snapshot-restore-file", snapshot="s1", path="/vol/vol_ds1/missing")
    assert exc.value.code == "13113"
    with pytest.raises(zapi.NaApiError) as exc:
        zcall(server, "snapshot-restore-volume", volume="vol_ds1", snapshot="s1")
    assert exc.value.code == "13038" and "newer" in exc.value.message
    zcall(server, "snapshot-restore-volume", volume="vol_ds1", snapshot="s1", force="true")
    assert [s["name"] for s in _snap_infos(server)] == ["s1"]
    assert not (vdir / "copy.img").exists() and (vdir / "d.img").read_text() == "v1"


def test_luns_lifs(zl):
    lab, server = zl
    res = server.invoke_successfully(zelem("lun-get-iter", {"query": {"lun-info": {"volume": "vol_san"}}}), True)
    lun = res.get_child_by_name("attributes-list").get_children()[0]
    assert lun["path"] == "/vol/vol_san/lun1" and lun["serial-number"] == "D31sh#DQGQUu"
    assert lun["vserver"] == "svm1" and int(lun["size"]) == 1024 * 1024
    assert zcall(server, "lun-get-serial-number", path="/vol/vol_san/lun1")["serial-number"] == "D31sh#DQGQUu"
    res = server.invoke_successfully(zelem("net-interface-get-iter",
                                           {"query": {"net-interface-info": {"address": "127.0.0.2"}}}), False)
    lif = res.get_child_by_name("attributes-list").get_children()[0]
    assert lif["vserver"] == "svm_dr" and lif["role"] == "data"


def test_snapmirror_get_and_update(zl):
    lab, server = zl
    zcall(server, "snapshot-create", volume="vol_ds1", snapshot="d1", **{"snapmirror-label": "daily"})
    q = {"query": {"snapmirror-info": {"destination-location": "svm_dr:vol_ds1_vault"}}}
    res = server.invoke_successfully(zelem("snapmirror-get-iter", q), enable_tunneling=False)
    info = res.get_child_by_name("attributes-list").get_children()[0]
    assert info["relationship-type"] == "extended_data_protection" and info["policy-type"] == "vault"
    assert info["mirror-state"] == "snapmirrored" and info["is-healthy"] == "true"
    assert info["source-location"] == "svm1:vol_ds1" and info["relationship-status"] == "idle"
    out = zcall(server, "snapmirror-update", tunnel=False, **{"destination-location": "svm_dr:vol_ds1_vault"})
    assert out["result-status"] == "succeeded" and out["result-jobid"]
    dr = zapi_server(lab.sim, vserver="svm_dr")
    assert [s["name"] for s in _snap_infos(dr, volume="vol_ds1_vault")] == ["d1"]
    zcall(dr, "snapmirror-update", **{"destination-volume": "vol_ds2_mirror"})
    mirror = server.invoke_successfully(zelem("snapmirror-get-iter", {"query": {"snapmirror-info": {
        "destination-volume": "vol_ds2_mirror"}}}), False).get_child_by_name("attributes-list").get_children()[0]
    assert mirror["policy-type"] == "async_mirror"


def test_default_cluster_zapi(zapi_env):
    # The default lab cluster (shared fixture) answers ZAPI too.
    server = zapi_server(zapi_env, vserver="svm1")
    assert zcall(server, "volume-get-iter")["num-records"] == "2"
    assert Client(zapi_env).get("/api/cluster").status == 200


def test_zapi_with_client_certificate(lab):
    # The collection's ZAPI client can log in with a certificate (no Authorization header, no challenge).
    import ssl
    import urllib.request
    issued = lab.admin("POST", "client-cert", {"user": "admin"})
    ctx = ssl.create_default_context(cafile=lab.sim.ca_file)
    ctx.load_cert_chain(issued["cert_file"], issued["key_file"])
    body = (b'<netapp xmlns="http://www.netapp.com/filer/admin" version="1.110" vfiler="svm1">'
            b"<volume-get-iter/></netapp>")
    req = urllib.request.Request(lab.url + "/servlets/netapp.servlets.admin.XMLrequest_filer", data=body,
                                 method="POST", headers={"Content-Type": "text/xml"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        text = resp.read().decode()
    assert 'status="passed"' in text and "<num-records>3</num-records>" in text


def test_restore_file_finishes_in_the_background(zl):
    """ONTAP answers snapshot-restore-file before the data is back: snapshot-restore-file-info counts it as in
    progress and the source snapshot is busy until it lands."""
    lab, server = zl
    vdir = lab.sim.data / "volumes" / "svm1" / "vol_ds1"
    (vdir / "d.img").write_text("v1")
    zcall(server, "snapshot-create", volume="vol_ds1", snapshot="s1")
    (vdir / "d.img").write_text("v2")
    lat = lab.admin("GET", "latency")
    lab.admin("POST", "latency", {"scale": 1, "kinds": {k: 0 for k in lat["kinds"]} | {"sfsr_background": 0.6}})
    try:
        zcall(server, "snapshot-restore-file", snapshot="s1", path="/vol/vol_ds1/d.img")
        assert (vdir / "d.img").read_text() == "v2"  # not there yet
        assert zcall(server, "snapshot-restore-file-info")["sfsr-in-progress"] == "1"
        with pytest.raises(zapi.NaApiError) as exc:
            zcall(server, "snapshot-delete", volume="vol_ds1", snapshot="s1")
        assert exc.value.code == "13024" and "busy" in exc.value.message
        end = time.monotonic() + 10
        while zcall(server, "snapshot-restore-file-info")["sfsr-in-progress"] != "0" and time.monotonic() < end:
            time.sleep(0.05)
        assert (vdir / "d.img").read_text() == "v1"
        zcall(server, "snapshot-delete", volume="vol_ds1", snapshot="s1")
    finally:
        lab.admin("POST", "latency", lat)
