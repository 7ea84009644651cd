"""SnapMirror restore (REST): a restore relationship from a vault/mirror destination back to its source
volume, the transfer of listed files from the destination's snapshot, its job and errors, the delete."""

from __future__ import annotations

from simapi import Client

REL = "/api/snapmirror/relationships"


def _vdir(c: Client, vol: str, svm: str = "svm1"):
    return c.sim.data / "volumes" / svm / vol


def _vaulted(c: Client) -> None:
    """vol_ds1 holds a.img/b.img in snapshot s1 (label daily), vaulted to svm_dr:vol_ds1_vault; then the
    primary changes and loses s1."""
    vdir = _vdir(c, "vol_ds1")
    (vdir / "a.img").write_text("one")
    (vdir / "b.img").write_text("bee")
    vol = c.volume("vol_ds1")
    assert c.create_snapshot(vol["uuid"], "s1", snapmirror_label="daily").status in (201, 202)
    vault = c.get(REL, destination__path="svm_dr:vol_ds1_vault")["records"][0]
    assert c.job(c.post(f"{REL}/{vault['uuid']}/transfers", {}))["state"] == "success"
    (vdir / "a.img").write_text("two")
    (vdir / "b.img").write_text("changed")
    snap = c.snapshots(vol["uuid"], name="s1")[0]
    assert c.job(c.delete(f"/api/storage/volumes/{vol['uuid']}/snapshots/{snap['uuid']}"))["state"] == "success"


def _restore_rel(c: Client, source: str = "svm_dr:vol_ds1_vault", destination: str = "svm1:vol_ds1") -> Client:
    return c.post(REL, {"source": {"path": source}, "destination": {"path": destination}, "restore": True},
                  query={"return_timeout": 10})


def test_restore_files_from_vault_then_delete(lab):
    _vaulted(lab)
    r = _restore_rel(lab)
    assert r.status == 201, r
    rel = lab.get(REL, destination__path="svm1:vol_ds1", restore="true", fields="restore,state,source")["records"]
    assert len(rel) == 1 and rel[0]["restore"] is True and rel[0]["source"]["path"] == "svm_dr:vol_ds1_vault"
    ru = rel[0]["uuid"]
    x = lab.post(f"{REL}/{ru}/transfers", {"source_snapshot": "s1",
                                           "files": [{"source_path": "/a.img", "destination_path": "/a.img"}]},
                 query={"return_timeout": 10})
    assert x.status == 201 and lab.job(x)["state"] == "success", x
    assert (_vdir(lab, "vol_ds1") / "a.img").read_text() == "one"
    assert (_vdir(lab, "vol_ds1") / "b.img").read_text() == "changed"  # only the listed file
    done = lab.get(f"{REL}/{ru}/transfers", fields="state,files")["records"]
    assert done[-1]["state"] == "success" and done[-1]["files"][0]["source_path"] == "/a.img"
    r = lab.delete(f"{REL}/{ru}", query={"return_timeout": 10})
    assert r.status == 200 and lab.job(r)["state"] == "success"
    assert not lab.get(REL, restore="true")["records"]
    assert lab.get(REL)["num_records"] == 2  # the vault and the mirror stay


def test_restore_relationship_errors(lab):
    _vaulted(lab)
    # the source must be a DP volume (a mirror or vault destination)
    r = _restore_rel(lab, source="svm1:vol_ds2")
    assert r.status == 400 and r["error"]["code"] == "262185" and "data protection" in r["error"]["message"]
    r = _restore_rel(lab, source="svm_dr:nope")
    assert r.status == 404 and r["error"]["code"] == "917927"
    r = lab.post(REL, {"source": {"path": "svm_dr:vol_ds1_vault"}, "destination": {"path": "svm1:vol_ds1"}},
                 query={"return_timeout": 10})
    assert r.status == 405  # only restore relationships are created here
    assert _restore_rel(lab).status == 201
    r = _restore_rel(lab)
    assert r.status == 409 and "already exists" in r["error"]["message"]


def test_restore_transfer_errors(lab):
    _vaulted(lab)
    _restore_rel(lab)
    ru = lab.get(REL, restore="true")["records"][0]["uuid"]

    def xfer(body):
        return lab.post(f"{REL}/{ru}/transfers", body, query={"return_timeout": 10})
    one = [{"source_path": "/a.img", "destination_path": "/a.img"}]
    r = xfer({"source_snapshot": "nope", "files": one})
    assert r.status == 404 and "nope" in r["error"]["message"]
    r = xfer({"source_snapshot": "s1", "files": [{"source_path": "/missing.img", "destination_path": "/m"}]})
    assert r.status == 404 and "/missing.img" in r["error"]["message"]
    r = xfer({"source_snapshot": "s1", "files": one * 9})
    assert r.status == 400 and "at most 8" in r["error"]["message"]
    r = xfer({"source_snapshot": "s1", "files": [{"source_path": "/../x", "destination_path": "/x"}]})
    assert r.status == 400
    assert (_vdir(lab, "vol_ds1") / "a.img").read_text() == "two"  # nothing written by a refused transfer
    # files on an ordinary relationship are refused
    mirror = lab.get(REL, destination__path="svm_dr:vol_ds2_mirror")["records"][0]
    r = lab.post(f"{REL}/{mirror['uuid']}/transfers", {"files": one}, query={"return_timeout": 10})
    assert r.status == 400 and r["error"]["target"] == "files"


def test_restore_needs_the_right(lab):
    viewer = Client(lab.sim, user="viewer", password="v")
    r = viewer.post(REL, {"source": {"path": "svm_dr:vol_ds1_vault"}, "destination": {"path": "svm1:vol_ds1"},
                          "restore": True})
    assert r.status == 403
