"""File information inside a volume and its snapshots (REST GET /api/storage/volumes/{uuid}/files/{path},
ZAPI file-get-file-info): a LUN's file is of type "lun" in the snapshot too; a missing path answers 404 /
EFILENOTFOUND. See docs/dev/ontap-interface.md ("File information in a snapshot")."""

from __future__ import annotations

import pytest
from netapp_lib.api.zapi import zapi
from simapi import zapi_server, zcall


def _enc(path: str) -> str:
    return path.replace(".", "%2E").replace("/", "%2F")


def test_rest_file_info_in_volume_and_snapshot(lab):
    vol = lab.volume("vol_san")
    lab.create_snapshot(vol["uuid"], "s1")
    base = "/api/storage/volumes/%s/files/" % vol["uuid"]
    r = lab.get(base + _enc(".snapshot/s1/lun1"), return_metadata="true")
    assert r.status == 200, r
    rec = r["records"][0]
    assert (rec["name"], rec["type"], rec["size"], rec["path"]) == ("lun1", "lun", 1024 * 1024, ".snapshot/s1/lun1")
    assert lab.get(base + _enc("lun1"), return_metadata="true")["records"][0]["type"] == "lun"
    r = lab.get(base + _enc(".snapshot/s1"), return_metadata="true")
    assert r["records"][0]["type"] == "directory"
    assert [x["name"] for x in lab.get(base + _enc(".snapshot/s1"))["records"]] == [".", "..", "lun1"]
    for missing in (".snapshot/s1/lun2", ".snapshot/nosuch/lun1"):
        r = lab.get(base + _enc(missing), return_metadata="true")
        assert r.status == 404 and r["error"]["code"] == "4" and "does not exist" in r["error"]["message"], r


def test_rest_file_info_missing_lun_in_snapshot(lab):
    vol = lab.volume("vol_san")
    lab.create_snapshot(vol["uuid"], "s1")
    snapfile = lab.sim.data / "volumes" / "svm1" / "vol_san" / ".snapshot" / "s1" / "lun1"
    snapfile.parent.chmod(0o755)
    snapfile.unlink()
    r = lab.get("/api/storage/volumes/%s/files/%s" % (vol["uuid"], _enc(".snapshot/s1/lun1")), return_metadata="true")
    assert r.status == 404


def test_rest_directory_listing_is_paged_like_ontap(lab):
    """A directory lists ".", ".." and its entries (each with the directory's path, a symlink as such), paged by
    max_records with a next link."""
    vol = lab.volume("vol_san")
    root = lab.sim.data / "volumes" / "svm1" / "vol_san"
    (root / "d1" / "sub").mkdir(parents=True)
    (root / "d1" / "f1").write_bytes(b"x")
    (root / "d1" / "ln").symlink_to("/etc")
    base = "/api/storage/volumes/%s/files/" % vol["uuid"]
    recs = lab.get(base + _enc("d1"))["records"]
    assert [(r["name"], r["type"], r["path"]) for r in recs] == [
        (".", "directory", "d1"), ("..", "directory", "d1"), ("f1", "file", "d1"), ("ln", "symlink", "d1"),
        ("sub", "directory", "d1")]
    page = lab.get(base + _enc("d1"), max_records="2")
    assert [r["name"] for r in page["records"]] == [".", ".."] and "start.index=2" in page["_links"]["next"]["href"]
    page = lab.get(base + _enc("d1"), max_records="3", start__index="3")
    assert [r["name"] for r in page["records"]] == ["ln", "sub"] and "next" not in page.body.get("_links", {})


@pytest.fixture
def zl(lab, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", lab.sim.ca_file)
    return lab, zapi_server(lab.sim, vserver="svm1")


def test_zapi_file_get_file_info(zl):
    lab, server = zl
    zcall(server, "snapshot-create", volume="vol_san", snapshot="s1")
    info = zcall(server, "file-get-file-info", path="/vol/vol_san/.snapshot/s1/lun1")
    rec = info.get_child_by_name("file-info")
    assert (rec["name"], rec["file-type"], int(rec["file-size"])) == ("lun1", "lun", 1024 * 1024)
    with pytest.raises(zapi.NaApiError) as exc:
        zcall(server, "file-get-file-info", path="/vol/vol_san/.snapshot/s1/lun2")
    assert exc.value.code == "13113"


def test_snapshot_omit_fault_drops_the_lun_from_new_snapshots(lab):
    vol = lab.volume("vol_san")
    assert lab.admin("POST", "snapshot-omit", {"svm": "svm1", "volume": "vol_san", "paths": ["lun1"]})
    lab.create_snapshot(vol["uuid"], "s1")
    base = "/api/storage/volumes/%s/files/" % vol["uuid"]
    assert lab.get(base + _enc(".snapshot/s1/lun1"), return_metadata="true").status == 404
    assert lab.get(base + _enc("lun1"), return_metadata="true").status == 200  # the live LUN stays
    lab.admin("POST", "snapshot-omit", {"svm": "svm1", "volume": "vol_san", "paths": []})
    lab.create_snapshot(vol["uuid"], "s2")
    assert lab.get(base + _enc(".snapshot/s2/lun1"), return_metadata="true").status == 200
