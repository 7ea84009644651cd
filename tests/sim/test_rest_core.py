"""REST basics: cluster/version, SVMs, LIFs, volumes, fields/filters/paging, errors, auth."""

from __future__ import annotations

import re

import pytest
from simapi import Client


def test_cluster_version_and_name(api):
    r = api.get("/api/cluster", fields="version")
    assert r.status == 200
    assert r["version"]["generation"] == 9 and r["version"]["major"] == 13 and r["version"]["minor"] == 1
    assert r["version"]["full"].startswith("NetApp Release 9.13.1:")
    assert "name" not in r.body  # only the asked-for field
    full = api.get("/api/cluster").body
    assert full["name"] == "lab-cluster" and re.match(r"^[0-9a-f-]{36}$", full["uuid"])


def test_nodes(api):
    r = api.get("/api/cluster/nodes", fields="version,name")
    assert r["num_records"] == 1 and r["records"][0]["version"]["major"] == 13


def test_svms_only_data_svms(api):
    r = api.get("/api/svm/svms", fields="name,uuid,state,subtype")
    assert [s["name"] for s in r["records"]] == ["svm1"]
    assert r["records"][0]["state"] == "running" and r["records"][0]["subtype"] == "default"


def test_ip_interfaces_filter_by_address(api):
    r = api.get("/api/network/ip/interfaces", ip__address="127.0.0.1", fields="name,ip,svm,scope,services")
    assert r["num_records"] == 1
    lif = r["records"][0]
    assert lif["svm"]["name"] == "svm1" and lif["scope"] == "svm" and "data_nfs" in lif["services"]
    mgmt = api.get("/api/network/ip/interfaces", scope="cluster", fields="svm,scope")["records"]
    assert mgmt and all("svm" not in m for m in mgmt)


def test_volumes_default_fields_are_keys_only(api):
    r = api.get("/api/storage/volumes")
    assert r.status == 200 and r["num_records"] == 2
    assert set(r["records"][0]) == {"uuid", "name", "_links"}


def test_volume_filters_and_dotted_fields(api):
    r = api.get("/api/storage/volumes", name="vol_ds1", svm__name="svm1", fields="uuid,nas.path,svm.name,space.size")
    rec = r["records"][0]
    assert rec["nas"] == {"path": "/vol_ds1"} and rec["svm"] == {"name": "svm1"}
    assert rec["space"]["size"] == 10 * 1024 ** 3
    assert api.get("/api/storage/volumes", nas__path="/vol_ds2")["records"][0]["name"] == "vol_ds2"
    assert api.get("/api/storage/volumes", name="vol_ds*")["num_records"] == 2
    assert api.get("/api/storage/volumes", name="vol_ds1|vol_ds2")["num_records"] == 2
    assert api.get("/api/storage/volumes", name="!vol_ds1")["records"][0]["name"] == "vol_ds2"
    assert api.get("/api/storage/volumes", name="nope")["num_records"] == 0
    uuid = rec["uuid"]
    assert api.get("/api/storage/volumes", uuid=uuid)["records"][0]["name"] == "vol_ds1"
    star = api.get("/api/storage/volumes", name="vol_ds1", fields="*")["records"][0]
    assert {"state", "style", "type", "space", "snapshot_policy", "svm"} <= set(star)
    excl = api.get("/api/storage/volumes", name="vol_ds1", fields="*,!space")["records"][0]
    assert "space" not in excl


def test_volume_get_one_by_uuid_and_unknown_uuid(api):
    vol = api.volume("vol_ds1")
    one = api.get(f"/api/storage/volumes/{vol['uuid']}")
    assert one.status == 200 and "records" not in one.body and one["name"] == "vol_ds1"
    missing = api.get("/api/storage/volumes/00000000-0000-0000-0000-000000000000")
    assert missing.status == 404
    assert missing["error"]["code"] == "4" and isinstance(missing["error"]["code"], str)
    assert missing["error"]["message"] == "entry doesn't exist"


def test_unmounted_volume_has_no_nas_path(fast_sim):
    sim = fast_sim({"svms": [{"name": "svm1", "lifs": [{"address": "127.0.0.1"}]}],
                    "volumes": [{"name": "v_unmounted", "svm": "svm1", "junction_path": None}]})
    rec = Client(sim).volume("v_unmounted")
    assert "path" not in rec["nas"]


def test_paging_max_records_and_next(api):
    r = api.get("/api/storage/volumes", max_records=1, fields="name")
    assert r["num_records"] == 1 and "next" in r["_links"]
    nxt = api.call("GET", r["_links"]["next"]["href"])
    assert nxt["records"][0]["name"] != r["records"][0]["name"]
    assert "next" not in nxt["_links"]
    assert "next" not in api.get("/api/storage/volumes")["_links"]


def test_return_records_false_counts_only(api):
    r = api.get("/api/storage/volumes", return_records="false")
    assert r["num_records"] == 2 and "records" not in r.body


def test_missing_and_wrong_credentials_401(api):
    r = api.call("GET", "/api/cluster", auth=False)
    assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Basic realm=")
    bad = Client(api.sim, password="wrong").get("/api/cluster")
    assert bad.status == 401


def test_readonly_user_403_on_writes(api):
    ro = Client(api.sim, user="backup_ro")
    vol = ro.volume("vol_ds1")
    r = ro.post(f"/api/storage/volumes/{vol['uuid']}/snapshots", {"name": "ro1"})
    assert r.status == 403 and r["error"]["code"] == "6"
    assert ro.patch(f"/api/storage/volumes/{vol['uuid']}", query={"restore_to.snapshot.name": "x"}).status == 403


def test_svm_tunnelling_header(api):
    r = api.call("GET", "/api/storage/volumes", query={"fields": "svm.name"}, headers={"X-Dot-SVM-Name": "svm1"})
    assert r["num_records"] == 2
    bad = api.call("GET", "/api/storage/volumes", headers={"X-Dot-SVM-Name": "nosuch"})
    assert bad.status == 404 and bad["error"]["code"] == "2621462"


def test_unknown_api_and_method(api):
    r = api.get("/api/storage/nothing")
    assert r.status == 404 and r["error"]["code"] == "4"
    r = api.delete("/api/cluster")
    assert r.status == 405 and r["error"]["code"] == "3"


def test_bad_json_and_body_on_get(api):
    r = api.call("GET", "/api/cluster", body={"a": 1})
    assert r.status == 400 and r["error"]["code"] == "262198"


def test_unexpected_argument_262179(api):
    vol = api.volume("vol_ds1")
    r = api.post(f"/api/storage/volumes/{vol['uuid']}/snapshots", {"name": "x", "bogus": 1})
    assert r.status == 400 and r["error"]["code"] == "262179" and r["error"]["target"] == "bogus"


def test_client_certificate_authentication(api, tmp_path):
    issued = api.admin("POST", "client-cert", {"user": "backup_ro"})
    c = Client(api.sim, cert=(issued["cert_file"], issued["key_file"]))
    assert c.get("/api/cluster").status == 200
    vol = c.volume("vol_ds1")
    # The certificate's CN is the user: backup_ro is read-only.
    assert c.post(f"/api/storage/volumes/{vol['uuid']}/snapshots", {"name": "x"}).status == 403
    assert api.call("POST", "/_sim/client-cert", {"user": "nobody"}).status == 400
    # A certificate from another CA fails the TLS handshake.
    import subprocess
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(crt), "-subj", "/CN=admin", "-days", "1"],
                   check=True, capture_output=True)
    rogue = Client(api.sim, cert=(str(crt), str(key)))
    with pytest.raises(OSError):
        rogue.get("/api/cluster")
