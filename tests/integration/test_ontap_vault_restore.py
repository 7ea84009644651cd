"""ontap_snapshot_info copies=true and ontap_restore source=: a backup pruned from its volume is found on the
volume's vault and mirror and its files come back from there through ONTAP's SnapMirror restore (REST), in
batches of at most 8 files, with the restore relationship deleted afterwards. Real module subprocesses against
the simulator; effects are checked in the simulator's volumes and call log."""

from __future__ import annotations

import base64
import json
import ssl
from urllib.request import Request, urlopen

import pytest
from helpers.module_fixtures import run_module
from helpers.sim_fixtures import Sim, start_sim

PW = "netapp123"
SNAP = "kvmsnap-daily_20260105T020000Z"
LAB = {
    "cluster": {"name": "vault-itest", "version": "9.13.1"},
    "users": [{"name": "admin", "password": PW, "role": "admin"}],
    "svms": [{"name": "svm1", "lifs": [{"name": "svm1_data1", "address": "127.0.0.1"}]}, {"name": "svm_dr"}],
    "volumes": [{"name": "vol_ds1", "svm": "svm1"}, {"name": "vol_other", "svm": "svm1"}],
    "relationships": [
        {"source": "svm1:vol_ds1", "destination": "svm_dr:vol_ds1_vault", "policy": "XDPDefault"},
        {"source": "svm1:vol_ds1", "destination": "svm_dr:vol_ds1_mirror", "policy": "MirrorAllSnapshots"},
        {"source": "svm1:vol_other", "destination": "svm_dr:vol_other_vault", "policy": "XDPDefault"},
    ],
}
FILES = [f"images/d{i}.img" for i in range(10)]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = start_sim(tmp_path_factory.mktemp("vault-itest") / "data", LAB, extra_args=["--latency-scale", "0"])
    yield s
    s.stop()


def run(sim: Sim, module: str, transport: str = "rest", check_mode: bool = False, **args):
    return run_module(module, {**sim.conn(transport), **args}, check_mode=check_mode)


def _mutating(sim: Sim, since: int) -> list[str]:
    return [f"{c['method']} {c['path']}" for c in sim.admin("GET", f"calls?since={since}")["calls"]
            if c["method"] in ("POST", "PATCH", "DELETE") and not c["path"].startswith("/_sim/") and not c.get("api")]


def _rest(sim: Sim, method: str, path: str, body=None) -> int:
    """A plain REST call (not the collection's client); its HTTP status."""
    req = Request(f"{sim.url}{path}?return_timeout=10", method=method,
                  data=None if body is None else json.dumps(body).encode(),
                  headers={"Content-Type": "application/json",
                           "Authorization": "Basic " + base64.b64encode(f"admin:{PW}".encode()).decode()})
    with urlopen(req, context=ssl.create_default_context(cafile=sim.ca_file), timeout=30) as resp:
        return resp.status


def _seq(sim: Sim) -> int:
    calls = sim.admin("GET", "calls")["calls"]
    return calls[-1]["seq"] if calls else 0


def test_backup_pruned_from_the_volume_comes_back_from_the_vault(sim):
    vdir = sim.data / "volumes" / "svm1" / "vol_ds1"
    (vdir / "images").mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(FILES):
        (vdir / f).write_text(f"backed up {i}")
    assert not run(sim, "ontap_snapshot", svm="svm1", volumes=["vol_ds1"], name=SNAP, policy="daily",
                   snapmirror_label="daily").failed
    assert not run(sim, "ontap_snapmirror", volumes=["svm1:vol_ds1"], state="updated").failed
    for f in FILES:
        (vdir / f).write_text("changed after the backup")
    assert not run(sim, "ontap_snapshot", svm="svm1", volumes=["vol_ds1"], name=SNAP, state="absent").failed

    # the catalogue: gone from the volume, kept on its vault and mirror
    info = run(sim, "ontap_snapshot_info", volumes=["svm1:vol_ds1"], copies=True)
    assert not info.failed, info
    assert SNAP not in [s["name"] for s in info["snapshots"]]
    where = sorted((c["location"], c["kind"], c["copy_of"]) for c in info["copies"] if c["name"] == SNAP)
    assert where == [("svm_dr:vol_ds1_mirror", "mirror", "svm1:vol_ds1"),
                     ("svm_dr:vol_ds1_vault", "vault", "svm1:vol_ds1")]
    assert all(c["trust"] == "good" or c["kvmsnap"] for c in info["copies"] if c["name"] == SNAP)
    assert info["copies_elsewhere"] == []

    # check mode: the checks run, nothing is written
    seq = _seq(sim)
    res = run(sim, "ontap_restore", check_mode=True, volume="svm1:vol_ds1", source="svm_dr:vol_ds1_vault",
              snapshot=SNAP, files=FILES)
    assert res["changed"] and len(res["restored"]) == 10 and not _mutating(sim, seq), res
    assert (vdir / FILES[0]).read_text() == "changed after the backup"

    seq = _seq(sim)
    res = run(sim, "ontap_restore", volume="svm1:vol_ds1", source="svm_dr:vol_ds1_vault", snapshot=SNAP, files=FILES)
    assert not res.failed, res
    assert res["source"] == "svm_dr:vol_ds1_vault" and {r["method"] for r in res["restored"]} == {"snapmirror_restore"}
    assert [(vdir / f).read_text() for f in FILES] == [f"backed up {i}" for i in range(10)]
    calls = _mutating(sim, seq)
    assert calls.count("POST /api/snapmirror/relationships") == 1
    assert len([c for c in calls if c.endswith("/transfers")]) == 2  # 8 + 2 files
    assert len([c for c in calls if c.startswith("DELETE /api/snapmirror/relationships/")]) == 1
    rels = sim.admin("GET", "state")["relationships"].values()
    assert not [r for r in rels if r.get("restore")]  # the restore relationship is gone


def test_a_directory_in_the_copy_is_listed_bounded(sim):
    """files= naming a directory of the vault's snapshot lists it through ONTAP (REST, "." and ".." left out, a
    symlink reported as one); a directory longer than the bound is cut and says so; ZAPI lists nothing."""
    snapdir = sim.data / "volumes" / "svm_dr" / "vol_ds1_vault" / ".snapshot" / SNAP
    mode = snapdir.stat().st_mode
    snapdir.chmod(0o755)
    try:
        (snapdir / "images" / "ln").symlink_to("/etc")
        many = snapdir / "many"
        many.mkdir()
        for i in range(4097):
            (many / ("f%05d" % i)).touch()
    finally:
        snapdir.chmod(mode)
    ask = ["svm_dr:/vol/vol_ds1_vault/images", "svm_dr:/vol/vol_ds1_vault/many", "svm_dr:/vol/vol_ds1_vault/images/d0.img"]
    res = run(sim, "ontap_snapshot_info", name=SNAP, files=ask)
    assert not res.failed, res
    listed, big, plain = res["files"]
    assert listed["type"] == "directory" and not listed["entries_truncated"]
    assert sorted((e["name"], e["type"]) for e in listed["entries"]) == sorted(
        [(f.split("/")[1], "file") for f in FILES] + [("ln", "symlink")])
    assert big["entries_truncated"] and len(big["entries"]) == 4096
    assert plain["type"] == "file" and plain["entries"] is None
    calls = [c for c in sim.admin("GET", "calls")["calls"] if c["path"].endswith("/files/.snapshot/%s/many" % SNAP)]
    assert calls and "max_records=4098" in calls[-1]["query"], calls
    zres = run(sim, "ontap_snapshot_info", transport="zapi", name=SNAP, files=ask[:1])
    assert not zres.failed and zres["files"][0]["present"] and zres["files"][0]["entries"] is None, zres


def test_refusals_before_anything_is_written(sim):
    vdir = sim.data / "volumes" / "svm1" / "vol_ds1"
    seq = _seq(sim)
    cases = [
        (dict(source="svm_dr:vol_other_vault"), "is not a SnapMirror/SnapVault destination of svm1:vol_ds1"),
        (dict(source="svm_dr:vol_ds1_vault", snapshot="kvmsnap-daily_20990101T000000Z"),
         "snapshot kvmsnap-daily_20990101T000000Z not found on svm_dr:vol_ds1_vault"),
        (dict(source="svm_dr:vol_ds1_vault", files=["images/nope.img"]), "/images/nope.img not in snapshot"),
        (dict(source="svm1:vol_ds1"), "source: svm1:vol_ds1 is the volume itself"),
        (dict(source="svm_dr:vol_ds1_vault", luns=["/vol/vol_ds1/lun1"]), "source: restores files in place only"),
        (dict(source="svm_dr"), "source: give the SnapMirror/SnapVault destination to restore from as 'svm:volume'"),
    ]
    for extra, needle in cases:
        args = {"volume": "svm1:vol_ds1", "snapshot": SNAP, "files": [FILES[0]], **extra}
        res = run(sim, "ontap_restore", **args)
        assert res.failed and needle in res["msg"], (extra, res["msg"])
    res = run(sim, "ontap_restore", transport="zapi", volume="svm1:vol_ds1", source="svm_dr:vol_ds1_vault",
              snapshot=SNAP, files=[FILES[0]])
    assert res.failed and "needs REST" in res["msg"]
    assert _mutating(sim, seq) == []
    # from the mirror too
    res = run(sim, "ontap_restore", volume="svm1:vol_ds1", source="svm_dr:vol_ds1_mirror", snapshot=SNAP,
              files=[FILES[1]])
    assert not res.failed, res
    assert (vdir / FILES[1]).read_text() == "backed up 1"


def test_a_restore_relationship_already_there_is_refused(sim):
    """Another restore into the volume (its relationship exists): refused before any transfer, and named."""
    status = sim.admin("GET", "state")
    vault = next(r for r in status["relationships"].values() if not r.get("restore"))
    assert vault  # the lab's relationships are there
    assert _rest(sim, "POST", "/api/snapmirror/relationships", {
        "source": {"path": "svm_dr:vol_ds1_vault"}, "destination": {"path": "svm1:vol_ds1"}, "restore": True}) == 201
    seq = _seq(sim)
    res = run(sim, "ontap_restore", volume="svm1:vol_ds1", source="svm_dr:vol_ds1_vault", snapshot=SNAP,
              files=[FILES[0]])
    assert res.failed and "a restore relationship into svm1:vol_ds1 exists already" in res["msg"], res["msg"]
    assert "snapmirror delete -destination-path svm1:vol_ds1" in res["msg"]
    assert _mutating(sim, seq) == []
    for uuid in [u for u, r in sim.admin("GET", "state")["relationships"].items() if r.get("restore")]:
        assert _rest(sim, "DELETE", f"/api/snapmirror/relationships/{uuid}") == 200


def test_a_failed_transfer_reports_per_file_and_the_relationship_goes_anyway(sim):
    """The second batch fails: the first 8 files are reported restored (the role rolls them back from its safety
    snapshot), the other 2 failed, and the restore relationship is deleted all the same."""
    vdir = sim.data / "volumes" / "svm1" / "vol_ds1"
    for f in FILES:
        (vdir / f).write_text("changed again")
    sim.admin("POST", "faults", {"action": "job_failure", "method": "POST",
                                 "path": "/api/snapmirror/relationships/*/transfers", "skip": 1, "count": 1,
                                 "code": "13303845", "message": "Transfer failed: simulated"})
    try:
        res = run(sim, "ontap_restore", volume="svm1:vol_ds1", source="svm_dr:vol_ds1_vault", snapshot=SNAP,
                  files=FILES)
    finally:
        sim.admin("DELETE", "faults")
    assert res.failed and "Transfer failed: simulated" in res["msg"], res
    assert [r["path"] for r in res["restored"]] == ["/" + f for f in FILES[:8]]
    assert [r["path"] for r in res["failed_items"]] == ["/" + f for f in FILES[8:]]
    assert [(vdir / f).read_text() for f in FILES[8:]] == ["changed again"] * 2
    rels = sim.admin("GET", "state")["relationships"].values()
    assert not [r for r in rels if r.get("restore")]
