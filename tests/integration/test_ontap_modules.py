"""The ontap_* modules against the lab's ONTAP simulator, over REST and ZAPI.

Each module run is a real subprocess (module_runner); nothing of the collection is mocked. The
simulator's admin endpoint (/_sim/) injects faults and shows the calls each run made.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
from helpers.module_fixtures import MODULE_PKG, run_module
from helpers.sim_fixtures import Sim, start_sim

TRANSPORTS = ["rest", "zapi"]
PW = "netapp123"
LAB = {
    "cluster": {"name": "itest", "version": "9.13.1"},
    "users": [{"name": "admin", "password": PW, "role": "admin"},
              {"name": "backup_ro", "password": PW, "role": "readonly"},
              {"name": "backup", "password": PW, "role": "backup"}],
    "svms": [{"name": "svm1", "lifs": [{"name": "svm1_data1", "address": "127.0.0.1"}]}, {"name": "svm2"},
             {"name": "svm_dr"}],
    "volumes": [{"name": n, "svm": "svm1"} for n in (
        "vol_ds1", "vol_ds2", "vol_cg1", "vol_cg2", "vol_prune_rest", "vol_prune_zapi", "vol_info_rest",
        "vol_info_zapi", "vol_rf_rest", "vol_rf_zapi", "vol_rv_rest", "vol_rv_zapi", "vol_san", "vol_plain",
        "vol_broken")] + [{"name": "vol_db", "svm": "svm2"}],
    "luns": [{"path": "/vol/vol_san/lun_rest", "svm": "svm1", "size": "1M"},
             {"path": "/vol/vol_san/lun_zapi", "svm": "svm1", "size": "1M"}],
    "relationships": [
        {"source": "svm1:vol_ds1", "destination": "svm_dr:vol_ds1_dst", "policy": "MirrorAllSnapshots"},
        {"source": "svm1:vol_ds2", "destination": "svm_dr:vol_ds2_vault", "policy": "XDPDefault"},
        {"source": "svm1:vol_broken", "destination": "svm_dr:vol_broken_dst", "policy": "MirrorAllSnapshots",
         "state": "broken_off", "healthy": False, "unhealthy_reason": "relationship broken off"},
    ],
}
LAB98 = {"cluster": {"name": "old", "version": "9.8.0"},
         "users": [{"name": "admin", "password": PW, "role": "admin"}],
         "svms": [{"name": "svm1"}],
         "volumes": [{"name": "vol_a", "svm": "svm1"}, {"name": "vol_b", "svm": "svm1"}]}
READ_ONLY_ZAPI = ("system-get-version", "system-get-ontapi-version", "file-get-file-info")
MUTATING_METHODS = ("POST", "PATCH", "DELETE", "PUT")


# ---- simulator helpers --------------------------------------------------------------------------
def _ctx(sim: Sim) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=sim.ca_file)


def sim_call(sim: Sim, method: str, path: str, body=None, user: str = "admin", password: str = PW):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(sim.url + path, data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, context=_ctx(sim), timeout=30) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
    return json.loads(raw) if raw.strip() else {}


def last_seq(sim: Sim) -> int:
    calls = sim_call(sim, "GET", "/_sim/calls")["calls"]
    return calls[-1]["seq"] if calls else 0


def calls_since(sim: Sim, seq: int) -> list[dict]:
    return [c for c in sim_call(sim, "GET", f"/_sim/calls?since={seq}")["calls"] if not c["path"].startswith("/_sim/")]


def mutating(calls: list[dict]) -> list[dict]:
    out = []
    for c in calls:
        if c.get("api"):
            if not (c["api"].endswith("-get-iter") or c["api"] in READ_ONLY_ZAPI or c["api"].endswith("-get")):
                out.append(c)
        elif c["method"] in MUTATING_METHODS:
            out.append(c)
    return out


def add_fault(sim: Sim, **spec) -> None:
    sim_call(sim, "POST", "/_sim/faults", spec)


def clear_faults(sim: Sim) -> None:
    sim_call(sim, "DELETE", "/_sim/faults")


def volume_uuid(sim: Sim, svm: str, vol: str) -> str:
    return sim_call(sim, "GET", f"/api/storage/volumes?svm.name={svm}&name={vol}")["records"][0]["uuid"]


def foreign_snapshot(sim: Sim, svm: str, vol: str, name: str, comment: str = "made by hand") -> None:
    """A snapshot another tool made (no kvmsnap metadata), created straight through REST."""
    uuid = volume_uuid(sim, svm, vol)
    sim_call(sim, "POST", f"/api/storage/volumes/{uuid}/snapshots?return_timeout=30",
             {"name": name, "comment": comment})


def snapshot_names(sim: Sim, svm: str, vol: str) -> list[str]:
    uuid = volume_uuid(sim, svm, vol)
    return [r["name"] for r in sim_call(sim, "GET", f"/api/storage/volumes/{uuid}/snapshots")["records"]]


def vol_dir(sim: Sim, svm: str, vol: str) -> Path:
    return sim.data / "volumes" / svm / vol


def warnings(res) -> list[str]:
    """Warning texts (ansible-core 2.19 returns WarningSummary objects)."""
    out = []
    for w in res.get("warnings") or []:
        out.append(w["event"]["msg"] if isinstance(w, dict) and "event" in w else str(w))
    return out


def run(sim: Sim, transport: str, module: str, check_mode: bool = False, user: str = "admin",
        password: str = PW, **args):
    return run_module(module, {**sim.conn(transport, user, password), **args}, check_mode=check_mode)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    sim = start_sim(tmp_path_factory.mktemp("ontap-itest") / "data", LAB)
    sim_call(sim, "POST", "/_sim/latency", {"scale": 0})
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def lab98(tmp_path_factory):
    sim = start_sim(tmp_path_factory.mktemp("ontap-98") / "data", LAB98)
    sim_call(sim, "POST", "/_sim/latency", {"scale": 0})
    yield sim
    sim.stop()


@pytest.fixture(autouse=True)
def _no_faults_left(request):
    yield
    for name in ("lab", "lab98"):
        if name in request.fixturenames:
            clear_faults(request.getfixturevalue(name))


# ---- ontap_snapshot: create / idempotency / check mode / delete --------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_snapshot_create_idempotent_check_mode_delete(request, lab, transport):
    name = f"kvmsnap-daily_{transport}_1"
    args = {"svm": "svm1", "volumes": ["vol_ds1", "vol_ds2"], "name": name, "policy": "daily",
            "snapmirror_label": "daily", "kvm_host": "kvm1", "run_id": "run-1"}

    seq = last_seq(lab)
    res = run_module("ontap_snapshot", {**lab.conn(transport), **args}, check_mode=True, diff=True)
    assert res["changed"] is True and not res.failed, res
    assert res["method"] == ("cg_temporary" if transport == "rest" else "cg_start_commit")
    assert res["diff"] == {"before": {"svm1:vol_ds1": [], "svm1:vol_ds2": []},
                           "after": {"svm1:vol_ds1": [name], "svm1:vol_ds2": [name]}}
    assert [s["volume"] for s in res["snapshots"]] == ["vol_ds1", "vol_ds2"]
    assert mutating(calls_since(lab, seq)) == []
    assert name not in snapshot_names(lab, "svm1", "vol_ds1")

    res = run(lab, transport, "ontap_snapshot", **args)
    assert res["changed"] is True, res
    assert res["method"] == ("cg_temporary" if transport == "rest" else "cg_start_commit")
    assert all(s["uuid"] and s["create_time"] for s in res["snapshots"])
    assert res["transport"] == transport and res["ontap_version"] == "9.13.1"
    if transport == "rest":  # the temporary CG is gone again, the volumes stay
        assert sim_call(lab, "GET", "/api/application/consistency-groups")["num_records"] == 0

    info = run(lab, transport, "ontap_snapshot_info", svm="svm1", volumes=["vol_ds1", "vol_ds2"], name=name)
    assert len(info["snapshots"]) == 2
    for snap in info["snapshots"]:
        assert {k: snap["kvmsnap"][k] for k in ("policy", "run", "host", "state")} == {
            "policy": "daily", "run": "run-1", "host": "kvm1", "state": "pending"}
        assert snap["snapmirror_label"] == "daily"
        assert snap["create_time_iso"].endswith("Z")

    seq = last_seq(lab)
    again = run(lab, transport, "ontap_snapshot", **args)
    assert again["changed"] is False and again["method"] is None, again
    assert mutating(calls_since(lab, seq)) == []

    seq = last_seq(lab)
    res = run(lab, transport, "ontap_snapshot", check_mode=True, svm="svm1", volumes=["vol_ds1", "vol_ds2"],
              name=name, state="absent")
    assert res["changed"] is True and len(res["snapshots"]) == 2
    assert mutating(calls_since(lab, seq)) == []
    res = run(lab, transport, "ontap_snapshot", svm="svm1", volumes=["vol_ds1", "vol_ds2"], name=name, state="absent")
    assert res["changed"] is True
    assert name not in snapshot_names(lab, "svm1", "vol_ds1") + snapshot_names(lab, "svm1", "vol_ds2")
    res = run(lab, transport, "ontap_snapshot", svm="svm1", volumes=["vol_ds1", "vol_ds2"], name=name, state="absent")
    assert res["changed"] is False


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_snapshot_never_overwrites_partial_or_foreign(lab, transport):
    partial = f"kvmsnap-manual_{transport}_partial"
    assert run(lab, transport, "ontap_snapshot", svm="svm1", volumes=["vol_ds1"], name=partial)["changed"]
    res = run(lab, transport, "ontap_snapshot", svm="svm1", volumes=["vol_ds1", "vol_ds2"], name=partial)
    assert res.failed
    assert "exists on svm1:vol_ds1 but not on svm1:vol_ds2" in res["msg"]
    assert partial not in snapshot_names(lab, "svm1", "vol_ds2")

    foreign = f"nightly_{transport}"
    foreign_snapshot(lab, "svm1", "vol_ds2", foreign)
    res = run(lab, transport, "ontap_snapshot", svm="svm1", volumes=["vol_ds2"], name=foreign)
    assert res.failed and "not created by kvmsnap.core" in res["msg"] and lab.host in res["msg"]


def test_snapshot_uses_existing_cg_and_single(lab):
    """An existing CG over exactly the volumes is used; a volume in another CG makes REST use ZAPI."""
    sim_call(lab, "POST", "/api/application/consistency-groups?return_timeout=30",
             {"name": "cg_vms", "svm": {"name": "svm1"},
              "volumes": [{"name": v, "provisioning_options": {"action": "add"}} for v in ("vol_cg1", "vol_cg2")]})
    res = run(lab, "rest", "ontap_snapshot", volumes=["svm1:vol_cg1", "svm1:vol_cg2"], name="kvmsnap-manual_cg")
    assert res["changed"] and res["method"] == "cg", res
    assert sim_call(lab, "GET", "/api/application/consistency-groups")["num_records"] == 1
    res = run(lab, "rest", "ontap_snapshot", volumes=["svm1:vol_plain"], name="kvmsnap-manual_single")
    assert res["method"] == "single"
    # vol_cg1 is in cg_vms, so no temporary CG can hold it: ZAPI cg-start/cg-commit
    res = run(lab, "rest", "ontap_snapshot", volumes=["svm1:vol_cg1", "svm1:vol_plain"], name="kvmsnap-manual_mix")
    assert res["changed"] and res["method"] == "cg_start_commit", res
    assert any("already in another consistency group" in w for w in warnings(res))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_snapshot_across_svms(request, lab, transport):
    res = run(lab, transport, "ontap_snapshot", volumes=["svm1:vol_plain", "svm2:vol_db"],
              name=f"kvmsnap-manual_{transport}_xsvm")
    assert res["changed"] and res["method"] == "cg_start_commit", res
    assert {s["svm"] for s in res["snapshots"]} == {"svm1", "svm2"}
    if transport == "rest":
        assert any("several SVMs" in w for w in warnings(res))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_failed_set_leaves_nothing_behind(lab, transport):
    """All-or-nothing (F12, docs/dev/faults.md#f12): a failure in the middle of a multi-volume snapshot removes what it made."""
    name = f"kvmsnap-manual_{transport}_f12"
    if transport == "rest":
        add_fault(lab, action="job_failure", method="POST", path="/api/application/consistency-groups/*/snapshots",
                  code="53411842", message="Failed to create Snapshot copy of consistency group: fence timed out")
    else:
        add_fault(lab, action="error", api="cg-commit", errno="13701",
                  message="Failed to commit CG Snapshot copy: the write fence timed out")
    res = run(lab, transport, "ontap_snapshot", svm="svm1", volumes=["vol_ds2", "vol_plain"], name=name)
    assert res.failed and "fence timed out" in res["msg"] and lab.host in res["msg"], res
    assert name not in snapshot_names(lab, "svm1", "vol_ds2") + snapshot_names(lab, "svm1", "vol_plain")
    if transport == "rest":  # the temporary CG was deleted again; the CG from the other test stays
        names = [c["name"] for c in sim_call(lab, "GET", "/api/application/consistency-groups")["records"]]
        assert not [n for n in names if n.startswith("kvmsnap_tmp_")], names


def test_zapi_multicreate_when_cg_start_is_missing(request, lab):
    add_fault(lab, action="error", api="cg-start", errno="13005", message="Unable to find API: cg-start", count=1)
    res = run(lab, "zapi", "ontap_snapshot", svm="svm1", volumes=["vol_cg1", "vol_cg2"], name="kvmsnap-manual_mc")
    assert res["changed"] and res["method"] == "multicreate", res


# ---- prune ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_prune_keeps_newest_foreign_and_busy(lab, transport):
    vol = f"vol_prune_{transport}"
    names = [f"kvmsnap-daily_2026010{i}T000000Z" for i in range(1, 5)]
    for name in names:  # good backups: created pending, then confirmed by their run
        assert run(lab, transport, "ontap_snapshot", svm="svm1", volumes=[vol], name=name, policy="daily",
                   run_id="r-" + name[-16:-8])["changed"]
        assert run(lab, transport, "ontap_snapshot", svm="svm1", volumes=[vol], name=name, state="confirmed",
                   run_id="r-" + name[-16:-8], consistency="suspended")["changed"]
    run(lab, transport, "ontap_snapshot", svm="svm1", volumes=[vol], name="kvmsnap-weekly_20260101T000000Z",
        policy="weekly")
    foreign_snapshot(lab, "svm1", vol, "hourly_like_other_tool")
    foreign_snapshot(lab, "svm1", vol, "kvmsnap-daily_20250101T000000Z", comment="same prefix, no metadata")
    busy = {"svm": "svm1", "volume": vol, "snapshot": names[0], "owners": ["snapmirror"]}
    sim_call(lab, "POST", "/_sim/busy", busy)
    prune = {"policy": "daily", "keep": 1}

    seq = last_seq(lab)
    res = run_module("ontap_snapshot", {**lab.conn(transport), "svm": "svm1", "volumes": [vol], "state": "pruned",
                                        "prune": prune}, check_mode=True, diff=True)
    assert res["changed"] is True
    assert res["diff"] == {"before": {f"svm1:{vol}": names[1:3] + names[:1]}, "after": {f"svm1:{vol}": names[:1]}}
    assert [p["name"] for p in res["pruned"]] == names[1:3]
    assert [s["name"] for s in res["not_pruned"]] == names[:1]
    assert mutating(calls_since(lab, seq)) == []

    # the delete of names[1] answers "busy" (as while a clone or a restore holds it)
    if transport == "rest":
        uuid = volume_uuid(lab, "svm1", vol)
        snap_uuid = [r["uuid"] for r in sim_call(lab, "GET", f"/api/storage/volumes/{uuid}/snapshots?name={names[1]}")
                     ["records"]][0]
        add_fault(lab, action="error", method="DELETE", path=f"/api/storage/volumes/{uuid}/snapshots/{snap_uuid}",
                  status=409, code="1638555", message=f"Snapshot copy {names[1]} is busy.")
    else:
        add_fault(lab, action="error", api="snapshot-delete", errno="13024", message=f"Snapshot copy {names[1]} is busy.")
    res = run(lab, transport, "ontap_snapshot", svm="svm1", volumes=[vol], state="pruned", prune=prune)
    assert not res.failed, res
    assert [p["name"] for p in res["pruned"]] == [names[2]]
    kept = {s["name"]: s["reason"].split(":")[0] for s in res["not_pruned"]}
    assert kept == {names[0]: "owned by snapmirror", names[1]: "busy"}
    assert len([w for w in warnings(res) if "not pruned" in w]) == 2
    left = snapshot_names(lab, "svm1", vol)
    assert names[3] in left and names[0] in left and names[1] in left and names[2] not in left
    assert "hourly_like_other_tool" in left and "kvmsnap-daily_20250101T000000Z" in left
    assert "kvmsnap-weekly_20260101T000000Z" in left

    # create + prune in one task: the new snapshot is pending (not yet a backup), so the newest good one (names[3])
    # stays; names[1] (no longer busy) goes
    res = run(lab, transport, "ontap_snapshot", svm="svm1", volumes=[vol], name="kvmsnap-daily_20260109T000000Z",
              policy="daily", prune={"policy": "daily", "keep": 1})
    assert res["changed"] and [p["name"] for p in res["pruned"]] == [names[1]]
    assert [s["name"] for s in res["not_pruned"]] == [names[0]]
    assert "kvmsnap-daily_20260109T000000Z" in snapshot_names(lab, "svm1", vol)


@pytest.mark.parametrize("keep", [0, True, 1024])
def test_prune_keep_refused_before_any_call(lab, keep):
    seq = last_seq(lab)
    res = run(lab, "rest", "ontap_snapshot", svm="svm1", volumes=["vol_plain"], state="pruned",
              prune={"policy": "daily", "keep": keep})
    assert res.failed and "prune.keep" in res["msg"]
    assert calls_since(lab, seq) == []


# ---- info ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_snapshot_info_filters(lab, transport):
    vol = f"vol_info_{transport}"
    run(lab, transport, "ontap_snapshot", svm="svm1", volumes=[vol], name="kvmsnap-weekly_20260105T000000Z",
        policy="weekly", comment="before upgrade")
    run(lab, transport, "ontap_snapshot", svm="svm1", volumes=[vol], name="kvmsnap-daily_20260105T000000Z",
        policy="daily")
    foreign_snapshot(lab, "svm1", vol, "manual_one")
    allsnaps = run(lab, transport, "ontap_snapshot_info", svm="svm1", volumes=[vol])
    assert allsnaps["changed"] is False
    by_name = {s["name"]: s for s in allsnaps["snapshots"]}
    assert set(by_name) == {"kvmsnap-weekly_20260105T000000Z", "kvmsnap-daily_20260105T000000Z", "manual_one"}
    assert by_name["manual_one"]["kvmsnap"] is None
    assert by_name["kvmsnap-weekly_20260105T000000Z"]["comment"].endswith("| before upgrade")
    assert by_name["kvmsnap-weekly_20260105T000000Z"]["busy"] is False
    ours = run(lab, transport, "ontap_snapshot_info", svm="svm1", volumes=[vol], only_ours=True)
    assert len(ours["snapshots"]) == 2
    weekly = run(lab, transport, "ontap_snapshot_info", volumes=[f"svm1:{vol}"], policy="weekly")
    assert [s["name"] for s in weekly["snapshots"]] == ["kvmsnap-weekly_20260105T000000Z"]
    whole_svm = run(lab, transport, "ontap_snapshot_info", svm="svm2")
    assert whole_svm["volumes"] == ["svm2:vol_db"]


# ---- restore ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_restore_files(lab, transport):
    vol = f"vol_rf_{transport}"
    disk = vol_dir(lab, "svm1", vol) / "images" / "vm1.qcow2"
    disk.parent.mkdir(parents=True, exist_ok=True)
    disk.write_bytes(b"good data")
    snap = "kvmsnap-daily_20260106T000000Z"
    assert run(lab, transport, "ontap_snapshot", svm="svm1", volumes=[vol], name=snap, policy="daily")["changed"]
    disk.write_bytes(b"corrupted!")

    seq = last_seq(lab)
    res = run(lab, transport, "ontap_restore", check_mode=True, svm="svm1", volume=vol, snapshot=snap,
              files=["images/vm1.qcow2"])
    assert res["changed"] and res["restored"] == [{"type": "file", "path": "/images/vm1.qcow2", "method": "check_mode"}]
    assert mutating(calls_since(lab, seq)) == [] and disk.read_bytes() == b"corrupted!"

    res = run(lab, transport, "ontap_restore", volume=f"svm1:{vol}", snapshot=snap, files=["/images/vm1.qcow2"])
    assert res["changed"] and not res.failed, res
    assert res["restored"][0]["method"] == ("rest_restore_to" if transport == "rest" else "zapi")
    assert disk.read_bytes() == b"good data"

    res = run(lab, transport, "ontap_restore", svm="svm1", volume=vol, snapshot="kvmsnap-daily_nope",
              files=["images/vm1.qcow2"])
    assert res.failed and f"snapshot kvmsnap-daily_nope not found on volume svm1:{vol}" in res["msg"]

    seq = last_seq(lab)
    for bad, needle in (("../../etc/passwd", "files[1]"), (".snapshot/x/vm1.qcow2", ".snapshot"),
                        ("/vol/other/x", "outside volume")):
        res = run(lab, transport, "ontap_restore", svm="svm1", volume=vol, snapshot=snap, files=["ok", bad])
        assert res.failed and needle in res["msg"], res
    assert calls_since(lab, seq) == []


def test_zapi_restore_waits_for_the_background_copy(lab):
    """ZAPI snapshot-restore-file returns while ONTAP still copies: ontap_restore returns only once the data is
    back (the VM is started right after it)."""
    vol = "vol_rf_zapi"
    disk = vol_dir(lab, "svm1", vol) / "bg.img"
    disk.write_bytes(b"snapshot data")
    snap = "kvmsnap-daily_20260106T010000Z"
    assert run(lab, "zapi", "ontap_snapshot", svm="svm1", volumes=[vol], name=snap, policy="daily")["changed"]
    disk.write_bytes(b"live data")
    lat = sim_call(lab, "GET", "/_sim/latency")
    sim_call(lab, "POST", "/_sim/latency", {"scale": 1, "kinds": {"sfsr_background": 1.0}})
    try:
        seq = last_seq(lab)
        res = run(lab, "zapi", "ontap_restore", svm="svm1", volume=vol, snapshot=snap, files=["bg.img"])
        assert res["changed"] and not res.failed, res
        assert disk.read_bytes() == b"snapshot data"
        assert "snapshot-restore-file-info" in [c.get("api") for c in calls_since(lab, seq)]
    finally:
        sim_call(lab, "POST", "/_sim/latency", lat)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_restore_volume_needs_confirmation(lab, transport):
    vol = f"vol_rv_{transport}"
    data = vol_dir(lab, "svm1", vol) / "vm2.img"
    data.write_bytes(b"v1")
    run(lab, transport, "ontap_snapshot", svm="svm1", volumes=[vol], name="kvmsnap-daily_20260107T000000Z")
    data.write_bytes(b"v2")
    run(lab, transport, "ontap_snapshot", svm="svm1", volumes=[vol], name="kvmsnap-daily_20260108T000000Z")
    data.write_bytes(b"v3")

    seq = last_seq(lab)
    res = run(lab, transport, "ontap_restore", svm="svm1", volume=vol, snapshot="kvmsnap-daily_20260107T000000Z",
              mode="volume")
    assert res.failed and "confirm_volume_restore" in res["msg"] and "EVERY file" in res["msg"]
    assert calls_since(lab, seq) == []

    seq = last_seq(lab)
    res = run(lab, transport, "ontap_restore", check_mode=True, svm="svm1", volume=vol,
              snapshot="kvmsnap-daily_20260107T000000Z", mode="volume", confirm_volume_restore=True)
    assert res["changed"] and res["deleted_snapshots"] == ["kvmsnap-daily_20260108T000000Z"]
    assert any("newer snapshot" in w for w in warnings(res))
    assert mutating(calls_since(lab, seq)) == []

    res = run(lab, transport, "ontap_restore", svm="svm1", volume=vol, snapshot="kvmsnap-daily_20260107T000000Z",
              mode="volume", confirm_volume_restore=True)
    assert res.failed and "set force: true" in res["msg"] and "kvmsnap-daily_20260108T000000Z" in res["msg"], res
    assert data.read_bytes() == b"v3"
    res = run(lab, transport, "ontap_restore", svm="svm1", volume=vol, snapshot="kvmsnap-daily_20260107T000000Z",
              mode="volume", confirm_volume_restore=True, force=True)
    assert res["changed"] and not res.failed, res
    assert data.read_bytes() == b"v1"
    assert "kvmsnap-daily_20260108T000000Z" not in snapshot_names(lab, "svm1", vol)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_restore_lun(lab, transport):
    lun = vol_dir(lab, "svm1", "vol_san") / f"lun_{transport}"
    with open(lun, "r+b") as fh:
        fh.write(b"BOOTSECTOR")
    snap = f"kvmsnap-daily_lun_{transport}"
    run(lab, transport, "ontap_snapshot", svm="svm1", volumes=["vol_san"], name=snap)
    with open(lun, "r+b") as fh:
        fh.write(b"RANSOMWARE")
    res = run(lab, transport, "ontap_restore", svm="svm1", volume="vol_san", snapshot=snap,
              luns=[f"/vol/vol_san/lun_{transport}"])
    assert res["changed"] and not res.failed, res
    assert res["restored"] == [{"type": "lun", "path": f"/vol/vol_san/lun_{transport}",
                                "method": "rest_lun_clone" if transport == "rest" else "zapi"}]
    with open(lun, "rb") as fh:
        assert fh.read(10) == b"BOOTSECTOR"
    res = run(lab, transport, "ontap_restore", svm="svm1", volume="vol_san", snapshot=snap, luns=["nolun"])
    assert res.failed and "/vol/vol_san/nolun" in res["msg"]


# ---- snapmirror --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_snapmirror_status_and_update(lab, transport):
    vols = ["vol_ds1", "vol_ds2", "vol_plain"]
    res = run(lab, transport, "ontap_snapmirror_info", svm="svm1", volumes=vols)
    assert res["changed"] is False
    rels = {r["source"]: r for r in res["relationships"]}
    assert set(rels) == {"svm1:vol_ds1", "svm1:vol_ds2"}
    assert rels["svm1:vol_ds1"]["type"] == "mirror" and rels["svm1:vol_ds2"]["type"] == "vault"
    assert rels["svm1:vol_ds1"]["destination"] == "svm_dr:vol_ds1_dst"
    assert res["volumes_without_relationships"] == ["svm1:vol_plain"]

    snap = f"kvmsnap-daily_sm_{transport}"
    for vol in ("vol_ds1", "vol_ds2"):
        assert run(lab, transport, "ontap_snapshot", svm="svm1", volumes=[vol], name=snap,
                   snapmirror_label="daily")["changed"]
    seq = last_seq(lab)
    res = run(lab, transport, "ontap_snapmirror", check_mode=True, svm="svm1", volumes=vols, state="updated")
    assert res["changed"] and len(res["updated"]) == 2
    assert mutating(calls_since(lab, seq)) == []

    res = run(lab, transport, "ontap_snapmirror", svm="svm1", volumes=vols, state="updated", label="daily")
    assert res["changed"] and not res.failed, res
    assert len(res["updated"]) == 2 and res["healthy"] is True
    assert any("vol_plain" in w for w in warnings(res))
    assert snap in snapshot_names(lab, "svm_dr", "vol_ds1_dst")
    assert snap in snapshot_names(lab, "svm_dr", "vol_ds2_vault")

    res = run(lab, transport, "ontap_snapmirror", svm="svm1", volumes=["vol_ds2"], state="updated", label="hourly")
    assert res["updated"] == [] and "no rule for label hourly" in res["not_updated"][0]["reason"], res

    # SnapMirror and SnapVault updates are separate switches (NTAP_SNAPMIRROR_UPDATE / NTAP_SNAPVAULT_UPDATE)
    res = run(lab, transport, "ontap_snapmirror", svm="svm1", volumes=vols, state="updated", types=["vault"])
    assert [r["source"] for r in res["updated"]] == ["svm1:vol_ds2"], res
    assert [r["source"] for r in res["not_updated"]] == ["svm1:vol_ds1"] and "mirror" in res["not_updated"][0]["reason"]
    res = run(lab, transport, "ontap_snapmirror", svm="svm1", volumes=vols, state="updated", types=["mirror"])
    assert [r["source"] for r in res["updated"]] == ["svm1:vol_ds1"], res
    res = run(lab, transport, "ontap_snapmirror", svm="svm1", volumes=vols, state="updated", types=[])
    assert res.failed and "types" in res["msg"]

    status = run(lab, transport, "ontap_snapmirror_info", svm="svm1", volumes=["vol_broken"])
    assert status["healthy"] is False and status["relationships"][0]["unhealthy_reason"]
    res = run(lab, transport, "ontap_snapmirror", svm="svm1", volumes=["vol_broken"], state="updated")
    assert res.failed
    assert "svm1:vol_broken -> svm_dr:vol_broken_dst" in res["msg"] and "resync" in res["msg"]


# ---- errors --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_errors_are_clear(lab, transport):
    res = run(lab, transport, "ontap_snapshot_info", password="wrong-pass", svm="svm1", volumes=["vol_ds1"])
    assert res.failed and lab.host in res["msg"] and "username and password" in res["msg"], res

    res = run(lab, transport, "ontap_snapshot", user="backup_ro", svm="svm1", volumes=["vol_plain"],
              name="kvmsnap-manual_forbidden")
    assert res.failed and "role" in res["msg"] and "svm1:vol_plain" in res["msg"], res

    # a 403 names the call, the controller and the user, and the privilege that is missing
    if transport == "rest":
        assert "POST /api/storage/volumes/" in res["msg"] and "/snapshots" in res["msg"], res
        assert "-api /api/storage/volumes/*/snapshots -access all" in res["msg"], res
    else:
        assert "ZAPI call snapshot-create" in res["msg"] and '-cmddirname "volume snapshot"' in res["msg"], res
    assert "ONTAP user backup_ro on %s lacks the privilege" % lab.host in res["msg"], res

    res = run(lab, transport, "ontap_snapshot", svm="svm1", volumes=["vol_nope"], name="kvmsnap-manual_x")
    assert res.failed and "volume vol_nope not found on SVM svm1" in res["msg"], res

    if transport == "rest":
        add_fault(lab, action="job_failure", method="POST", path="/api/storage/volumes/*/snapshots",
                  code="13", message="Failed to create snapshot: aggregate aggr1 is out of space")
    else:
        add_fault(lab, action="error", api="snapshot-create", errno="13001",
                  message="Failed to create snapshot: aggregate aggr1 is out of space")
    res = run(lab, transport, "ontap_snapshot", svm="svm1", volumes=["vol_plain"], name=f"kvmsnap-manual_jf_{transport}")
    assert res.failed and "aggregate aggr1 is out of space" in res["msg"] and "svm1:vol_plain" in res["msg"], res
    assert f"kvmsnap-manual_jf_{transport}" not in snapshot_names(lab, "svm1", "vol_plain")


def test_transient_errors_are_retried(lab):
    add_fault(lab, action="error", method="GET", path="/api/storage/volumes", status=500, code="65552",
              message="RPC: Remote system error", count=2)
    res = run(lab, "rest", "ontap_snapshot_info", svm="svm1", volumes=["vol_plain"])
    assert not res.failed, res
    add_fault(lab, action="error", method="POST", path="/api/storage/volumes/*/snapshots", status=409, code="2",
              message="Volume vol_plain is temporarily locked. Try again later.", count=1)
    res = run(lab, "rest", "ontap_snapshot", svm="svm1", volumes=["vol_plain"], name="kvmsnap-manual_locked")
    assert not res.failed and res["changed"], res
    # a lost answer to the create: the module looks before it repeats it, and does not fail or duplicate
    add_fault(lab, action="drop", method="POST", path="/api/storage/volumes/*/snapshots", count=1)
    res = run(lab, "rest", "ontap_snapshot", svm="svm1", volumes=["vol_plain"], name="kvmsnap-manual_retry")
    assert not res.failed and res["changed"], res
    assert snapshot_names(lab, "svm1", "vol_plain").count("kvmsnap-manual_retry") == 1


@pytest.mark.parametrize("hostname", ["https://cluster1/api", "cluster1 ", "cluster1:443"])
def test_bad_hostname_is_refused(lab, hostname):
    res = run_module("ontap_snapshot_info", {**lab.conn("rest"), "hostname": hostname, "svm": "svm1"})
    assert res.failed and res["msg"].startswith("hostname:"), res


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_password_never_in_output(lab, transport):
    secret = "S3cr3t-Sentinel-pw"
    outputs = []
    margs_list = [
        {**lab.conn(transport, "admin", secret), "svm": "svm1", "volumes": ["vol_ds1"]},           # 401
        {**lab.conn(transport), "svm": "svm1", "volumes": ["vol_nope"]},                           # 404
    ]
    for margs in margs_list:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump({"ANSIBLE_MODULE_ARGS": margs}, fh)
        try:
            proc = subprocess.run([sys.executable, "-m", f"{MODULE_PKG}.ontap_snapshot_info", fh.name],
                                  capture_output=True, text=True, timeout=120, env=dict(os.environ), check=False)
        finally:
            os.unlink(fh.name)
        outputs.append(proc.stdout + proc.stderr)
        assert json.loads(proc.stdout.strip().splitlines()[-1])["failed"]
    assert secret not in outputs[0] and PW not in outputs[1]
    assert base64.b64encode(f"admin:{secret}".encode()).decode() not in outputs[0]


# ---- an ONTAP 9.8 cluster: no CG API, no native single-file restore ---------------------------------------------------
def test_ontap_98_fallbacks(lab98):
    res = run(lab98, "rest", "ontap_snapshot", svm="svm1", volumes=["vol_a", "vol_b"], name="kvmsnap-daily_98",
              policy="daily")
    assert res["changed"] and res["method"] == "cg_start_commit", res
    assert any("9.8.0 has no consistency-group REST API" in w for w in warnings(res))
    # a cluster without cg-start: snapshot-multicreate, metadata written over REST
    add_fault(lab98, action="error", api="cg-start", errno="13005", message="Unable to find API: cg-start", count=1)
    res = run(lab98, "rest", "ontap_snapshot", svm="svm1", volumes=["vol_a", "vol_b"], name="kvmsnap-daily_98m",
              policy="daily")
    assert res["changed"] and res["method"] == "multicreate", res
    info = run(lab98, "rest", "ontap_snapshot_info", svm="svm1", volumes=["vol_a", "vol_b"], policy="daily")
    assert {s["volume"] for s in info["snapshots"] if s["name"] == "kvmsnap-daily_98m"} == {"vol_a", "vol_b"}
    disk = vol_dir(lab98, "svm1", "vol_a") / "vm.img"
    disk.write_bytes(b"new")
    res = run(lab98, "rest", "ontap_snapshot", svm="svm1", volumes=["vol_a"], name="kvmsnap-daily_98b")
    disk.write_bytes(b"newer")
    res = run(lab98, "rest", "ontap_restore", svm="svm1", volume="vol_a", snapshot="kvmsnap-daily_98b",
              files=["vm.img"])
    assert res["changed"] and res["restored"][0]["method"] == "cli_passthrough", res
    assert disk.read_bytes() == b"new"


# ---- connection: env fallback, auto transport, TLS per session, job timeout ------------------------------------------
def test_env_fallback_and_auto_transport(lab):
    env = {"KVMSNAP_ONTAP_HOSTNAME": lab.host, "KVMSNAP_ONTAP_PORT": str(lab.port), "KVMSNAP_ONTAP_USERNAME": "admin",
           "KVMSNAP_ONTAP_PASSWORD": PW, "KVMSNAP_ONTAP_CA_PATH": lab.ca_file, "KVMSNAP_ONTAP_TRANSPORT": "auto"}
    res = run_module("ontap_snapshot_info", {"svm": "svm1", "volumes": ["vol_plain"]}, env=env)
    assert not res.failed and res["transport"] == "rest", res
    assert res["invocation"]["module_args"]["password"] != PW


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tls_is_verified_per_session(lab, transport):
    conn = {**lab.conn(transport), "ca_path": None}
    res = run_module("ontap_snapshot_info", {**conn, "svm": "svm1", "volumes": ["vol_plain"]})
    assert res.failed and "TLS certificate verification failed" in res["msg"] and "ca_path" in res["msg"], res
    res = run_module("ontap_snapshot_info", {**conn, "validate_certs": False, "svm": "svm1", "volumes": ["vol_plain"]})
    assert not res.failed, res


def test_job_still_running_at_timeout(lab):
    add_fault(lab, action="job_running", method="POST", path="/api/storage/volumes/*/snapshots")
    res = run(lab, "rest", "ontap_snapshot", timeout=2, svm="svm1", volumes=["vol_plain"], name="kvmsnap-manual_slow")
    assert res.failed and "still running after 2 s" in res["msg"] and "timeout" in res["msg"], res


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_lost_answer_to_create_is_not_repeated(lab, transport):
    """The controller made the snapshot but the answer was lost: the module finds it, does not fail or duplicate."""
    if transport == "rest":
        add_fault(lab, action="drop", method="POST", path="/api/storage/volumes/*/snapshots", execute=True)
    else:
        add_fault(lab, action="drop", api="snapshot-create", execute=True)
    name = f"kvmsnap-manual_{transport}_lost"
    res = run(lab, transport, "ontap_snapshot", svm="svm1", volumes=["vol_plain"], name=name, policy="daily")
    assert not res.failed and res["changed"] and res["method"] == "single", res
    assert snapshot_names(lab, "svm1", "vol_plain").count(name) == 1
    info = run(lab, transport, "ontap_snapshot_info", svm="svm1", volumes=["vol_plain"], name=name)
    assert info["snapshots"][0]["kvmsnap"]["policy"] == "daily"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_client_certificate_login(lab, transport):
    conn = lab.conn(transport, "admin", cert=True)
    os.chmod(conn["key_file"], 0o600)
    res = run_module("ontap_snapshot_info", {**conn, "svm": "svm1", "volumes": ["vol_plain"]})
    assert not res.failed and res["transport"] == transport, res
    os.chmod(conn["key_file"], 0o644)
    res = run_module("ontap_snapshot_info", {**conn, "svm": "svm1", "volumes": ["vol_plain"]})
    assert res.failed and res["msg"].startswith("key_file:") and "chmod 600" in res["msg"], res


# ---- transport: auto ---------------------------------------------------------------------------------------------
def test_transport_auto_prefers_rest_and_falls_back_to_zapi(lab):
    res = run(lab, "auto", "ontap_snapshot_info", svm="svm1", volumes=["vol_ds1"])
    assert not res.failed and res["transport"] == "rest", res
    # a cluster whose REST API does not answer (404 on /api/cluster, as before ONTAP 9.6): ZAPI
    add_fault(lab, action="error", method="GET", path="/api/cluster", status=404, code="4",
              message="entry doesn't exist", count=1)
    seq = last_seq(lab)
    res = run(lab, "auto", "ontap_snapshot_info", svm="svm1", volumes=["vol_ds1"])
    assert not res.failed and res["transport"] == "zapi", res
    assert any(c.get("api") for c in calls_since(lab, seq)), "no ZAPI call reached the simulator"
    # wrong credentials are not a reason to try the other API: the 401 is reported
    res = run(lab, "auto", "ontap_snapshot_info", password="wrong-pass", svm="svm1", volumes=["vol_ds1"])
    assert res.failed and "username and password" in res["msg"] and "transport auto" in res["msg"], res


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_snapshot_info_files_finds_luns_in_the_snapshot(lab, transport):
    """ontap_snapshot_info files: a LUN is looked up inside the snapshot through ONTAP (REST files/{path} with
    %2E/%2F, ZAPI file-get-file-info); one removed from the snapshot is reported absent, not as an error.
    Guarantee: verify-before-ok (docs/dev/faults.md#verify-before-ok)."""
    snap = f"kvmsnap-manual_files_{transport}"
    lun = f"/vol/vol_san/lun_{transport}"
    run(lab, transport, "ontap_snapshot", svm="svm1", volumes=["vol_san"], name=snap)
    seq = last_seq(lab)
    res = run(lab, transport, "ontap_snapshot_info", name=snap, files=[f"svm1:{lun}", "/vol/vol_san/nolun"],
              svm="svm1")
    assert not res.failed, res
    assert res["files"] == [
        {"svm": "svm1", "volume": "vol_san", "path": lun, "snapshot": snap, "present": True, "type": "lun",
         "size": 1024 * 1024, "lun_size": 1024 * 1024, "entries": None, "entries_truncated": False},
        {"svm": "svm1", "volume": "vol_san", "path": "/vol/vol_san/nolun", "snapshot": snap, "present": False,
         "type": None, "size": None, "lun_size": None, "entries": None, "entries_truncated": False}]
    assert [s["name"] for s in res["snapshots"]] == [snap]
    calls = calls_since(lab, seq)
    assert not mutating(calls)
    if transport == "rest":
        assert any(c["path"].endswith(f"/files/.snapshot/{snap}/lun_rest") for c in calls), calls
    else:
        assert any(c.get("api") == "file-get-file-info" for c in calls), calls
    snapfile = vol_dir(lab, "svm1", "vol_san") / ".snapshot" / snap / f"lun_{transport}"
    snapfile.parent.chmod(0o755)
    snapfile.unlink()
    res = run(lab, transport, "ontap_snapshot_info", name=snap, files=[lun], svm="svm1")
    assert res["files"][0]["present"] is False and res["files"][0]["lun_size"] == 1024 * 1024
    res = run(lab, transport, "ontap_snapshot_info", files=[lun], svm="svm1")
    assert res.failed and "name" in res["msg"]
    run(lab, transport, "ontap_snapshot", svm="svm1", volumes=["vol_san"], name=snap, state="absent")
