"""Snapshot trust on the ONTAP side (docs/dev/faults.md#late-snapshot): pending/good/late snapshots, orphan recovery, temporary
consistency groups of dead runs, retention over whole snapshot sets, over REST and ZAPI against the simulator.

The client tests call the collection's Ontap client directly; the module tests run ontap_snapshot /
ontap_snapshot_info in a subprocess as Ansible does (module_runner). Nothing is mocked.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
from helpers.module_fixtures import run_module
from helpers.sim_fixtures import start_sim

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_interface import temp_cg_until
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_snapshot_ops import (
    SnapshotTrustError,
    confirm_snapshot_set,
    ensure_snapshot_set,
    recover_orphans,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import build_comment, parse_comment

TRANSPORTS = ["rest", "zapi"]
PW = "netapp123"
VOLS = ("vol_a", "vol_b", "vol_c", "vol_d", "vol_e", "vol_f", "vol_g", "vol_h", "vol_rec", "vol_p1", "vol_p2",
        "vol_m1", "vol_m2", "vol_s1", "vol_s2", "vol_hang")
LAB = {
    "cluster": {"name": "trust", "version": "9.13.1"},
    "users": [{"name": "admin", "password": PW, "role": "admin"}],
    "svms": [{"name": "svm1"}, {"name": "svm2"}],
    "volumes": [{"name": "%s_%s" % (v, t), "svm": "svm1"} for v in VOLS for t in TRANSPORTS]
    + [{"name": "vol_other", "svm": "svm2"}],
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    os.environ.pop("REQUESTS_CA_BUNDLE", None)
    sim = start_sim(tmp_path_factory.mktemp("ontap-trust") / "data", LAB)
    sim.admin("POST", "latency", {"scale": 0})
    yield sim
    sim.stop()


@pytest.fixture(autouse=True)
def _no_faults_left(request):
    yield
    if "lab" in request.fixturenames:
        request.getfixturevalue("lab").admin("DELETE", "faults")


def client(sim, transport: str):
    return connect(dict(sim.conn(transport), timeout=30, retries=1, cert_file=None, key_file=None), "test")


def vols(transport: str, *names: str) -> list:
    return [("svm1", "%s_%s" % (n, transport)) for n in names]


def run(sim, transport: str, check_mode: bool = False, module: str = "ontap_snapshot", **args):
    return run_module(module, {**sim.conn(transport), **args}, check_mode=check_mode)


def comments(c, volumes, name) -> list:
    return [(c.get_snapshot(s, v, name) or {}).get("comment") for s, v in volumes]


# ---- client: comment, temporary CGs ---------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_set_snapshot_comment(lab, transport):
    c = client(lab, transport)
    vs = vols(transport, "vol_a")
    name = "kvmsnap-daily_%s_comment" % transport
    c.create_snapshot_set(vs, name, comment=build_comment("daily", "r1"))
    new = build_comment("daily", "r1", state="good", consistency="suspended")
    c.set_snapshot_comment("svm1", vs[0][1], name, new)
    assert client(lab, transport).get_snapshot("svm1", vs[0][1], name)["comment"] == new
    with pytest.raises(OntapError) as err:
        c.set_snapshot_comment("svm1", vs[0][1], "kvmsnap-daily_missing", new)
    assert err.value.is_not_found and "kvmsnap-daily_missing" in str(err.value)


def test_temp_cg_name_carries_until_and_is_removed(lab):
    c = client(lab, "rest")
    vs = vols("rest", "vol_a", "vol_b")
    until = int(time.time()) + 600
    seen = []
    orig = c._temp_cg

    def spy(svm, names):
        cg = orig(svm, names)
        seen.append(cg["name"])
        return cg
    c._temp_cg = spy
    c.create_snapshot_set(vs, "kvmsnap-daily_rest_cgname", comment=build_comment("daily", "r1"), until=until)
    assert len(seen) == 1 and seen[0].startswith("kvmsnap_tmp_%d_" % until) and temp_cg_until(seen[0]) == until
    assert c.list_temp_cgs("svm1") == []  # deleted again after the snapshot


def make_temp_cg(sim, svm: str, names: list, until) -> str:
    """A temporary CG as a run left it behind (killed between CG create and delete)."""
    name = "kvmsnap_tmp_%s%s" % ("%d_" % until if until is not None else "", uuid.uuid4().hex[:12])
    c = client(sim, "rest")
    c._send("POST", "/api/application/consistency-groups", "test: leave a CG behind",
            body={"name": name, "svm": {"name": svm},
                  "volumes": [{"name": v, "provisioning_options": {"action": "add"}} for v in names]})
    return name


def test_list_and_delete_temp_cgs(lab):
    c = client(lab, "rest")
    dead = make_temp_cg(lab, "svm1", ["vol_c_rest"], int(time.time()) - 10)
    listed = {cg["name"]: cg for cg in c.list_temp_cgs("svm1")}
    assert listed[dead]["volumes"] == ["vol_c_rest"] and listed[dead]["svm"] == "svm1"
    assert listed[dead]["until"] < time.time()
    c.delete_cg(listed[dead])
    assert dead not in [cg["name"] for cg in c.list_temp_cgs("svm1")]
    c.delete_cg(listed[dead])  # already gone: fine
    assert client(lab, "zapi").list_temp_cgs("svm1") == []


def test_dead_runs_temp_cg_is_not_reused(lab):
    """kill -9 between CG create and delete left kvmsnap_tmp_* over the same volumes: the next snapshot must not
    quietly reuse it (old code: method "cg" through the leftover); it is removed and a fresh one is used."""
    c = client(lab, "rest")
    vs = vols("rest", "vol_d", "vol_e")
    dead = make_temp_cg(lab, "svm1", [v for _s, v in vs], int(time.time()) - 5)
    res = c.create_snapshot_set(vs, "kvmsnap-daily_rest_reuse", comment=build_comment("daily", "r2"))
    assert res["method"] == "cg_temporary", res
    assert [cg["name"] for cg in c.list_temp_cgs("svm1") if set(cg["volumes"]) & {"vol_d_rest", "vol_e_rest"}] == []
    assert any(dead in w for w in c.warnings), c.warnings


# ---- confirm / recover (client level) ------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_confirm_snapshot_set(lab, transport):
    c = client(lab, transport)
    vs = vols(transport, "vol_f", "vol_g")
    name = "kvmsnap-daily_%s_confirm" % transport
    until = int(time.time()) + 300
    res = ensure_snapshot_set(c, vs, name, build_comment("daily", "run-1", "kvm1", until=until), until=until)
    assert res["changed"]
    assert all(parse_comment(x)["state"] == "pending" for x in comments(c, vs, name))
    # another run's confirmation, a missing snapshot: refused, nothing changed
    with pytest.raises(SnapshotTrustError) as err:
        confirm_snapshot_set(c, vs, name, "run-2")
    assert "belongs to run run-1, not to run run-2" in str(err.value) and "svm1:vol_f_%s" % transport in str(err.value)
    with pytest.raises(SnapshotTrustError, match="not found"):
        confirm_snapshot_set(c, vs, name + "_x", "run-1")
    # check mode: reported, not written
    res = confirm_snapshot_set(c, vs, name, "run-1", consistency="suspended", check_mode=True)
    assert res["changed"] and all(parse_comment(x)["state"] == "pending" for x in comments(c, vs, name))
    res = confirm_snapshot_set(c, vs, name, "run-1", consistency="suspended")
    assert res["changed"] and [s["state"] for s in res["snapshots"]] == ["good", "good"]
    for text in comments(c, vs, name):
        meta = parse_comment(text)
        assert (meta["state"], meta["consistency"], meta["until"], meta["run"], meta["host"]) == (
            "good", "suspended", None, "run-1", "kvm1")
    again = confirm_snapshot_set(c, vs, name, "run-1", consistency="suspended")
    assert again["changed"] is False
    with pytest.raises(SnapshotTrustError, match="already good"):
        confirm_snapshot_set(c, vs, name, "run-1", state="late")
    # a rerun of the same name and run id is a no-op; another run's same name is refused (F11, docs/dev/faults.md#f11)
    assert ensure_snapshot_set(c, vs, name, build_comment("daily", "run-1", "kvm1"))["changed"] is False
    with pytest.raises(OntapError, match="made by run run-1, not by this run"):
        ensure_snapshot_set(c, vs, name, build_comment("daily", "run-9", "kvm1"))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_confirm_late_and_foreign(lab, transport):
    c = client(lab, transport)
    vs = vols(transport, "vol_h")
    name = "kvmsnap-daily_%s_late" % transport
    c.create_snapshot_set(vs, name, comment=build_comment("daily", "run-3"))
    res = confirm_snapshot_set(c, vs, name, "run-3", state="late")
    assert res["snapshots"][0]["consistency"] == "crash"
    assert parse_comment(comments(c, vs, name)[0])["state"] == "late"
    with pytest.raises(SnapshotTrustError, match="already late"):
        confirm_snapshot_set(c, vs, name, "run-3")
    c.create_snapshot_set(vs, name + "_hand", comment="made by hand")
    with pytest.raises(SnapshotTrustError, match="was not made by kvmsnap.core"):
        confirm_snapshot_set(c, vs, name + "_hand", "run-3")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_recover_orphans_client(lab, transport):
    c = client(lab, transport)
    vs = vols(transport, "vol_rec")
    now = int(time.time())
    dead = "kvmsnap-hourly_%s_dead" % transport
    live = "kvmsnap-hourly_%s_live" % transport
    c.create_snapshot_set(vs, dead, comment=build_comment("hourly", "run-dead", until=now - 1))
    c.create_snapshot_set(vs, live, comment=build_comment("hourly", "run-live", until=now + 600))
    c.create_snapshot_set(vs, "manual_%s_orphan" % transport, comment=build_comment("hourly", "run-x", until=now - 1))
    res = recover_orphans(c, vs, check_mode=True)
    assert [m["name"] for m in res["marked_late"]] == [dead] and res["changed"]
    assert parse_comment(comments(c, vs, dead)[0])["state"] == "pending"
    res = recover_orphans(c, vs)
    assert res["marked_late"] == [{"svm": "svm1", "volume": vs[0][1], "name": dead, "run": "run-dead"}]
    meta = parse_comment(comments(c, vs, dead)[0])
    assert (meta["state"], meta["consistency"]) == ("late", "crash")
    assert parse_comment(comments(c, vs, live)[0])["state"] == "pending"
    # not ours by name: untouched
    assert parse_comment(comments(c, vs, "manual_%s_orphan" % transport)[0])["state"] == "pending"
    assert recover_orphans(c, vs)["marked_late"] == []


# ---- the ontap_snapshot module: confirmed / recovered / pruned -------------------------------------------
def make_set(sim, transport: str, volumes: list, name: str, mark) -> None:
    """One snapshot set as a backup run leaves it: created pending, then confirmed good / marked late (mark None:
    left pending with an until in the future)."""
    run_id = "run-" + name.rsplit("_", 1)[-1]
    res = run(sim, transport, svm="svm1", volumes=volumes, name=name, policy="daily", run_id=run_id,
              until=int(time.time()) + 600)
    assert res["changed"] and not res.failed, res
    if mark:
        extra = {"consistency": "suspended"} if mark == "good" else {}
        res = run(sim, transport, svm="svm1", volumes=volumes, name=name, state="confirmed", run_id=run_id, mark=mark,
                  **extra)
        assert res.get("changed") and [s["state"] for s in res["snapshots"]] == [mark] * len(volumes), res


def info(sim, transport: str, volumes: list, **args) -> dict:
    res = run(sim, transport, module="ontap_snapshot_info", svm="svm1", volumes=volumes, **args)
    assert not res.failed, res
    return res


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_module_confirmed_refusals_and_idempotence(lab, transport):
    vs = ["vol_m1_%s" % transport, "vol_m2_%s" % transport]
    name = "kvmsnap-daily_20260301T000000Z"
    make_set(lab, transport, vs, name, None)
    snaps = info(lab, transport, vs, name=name)["snapshots"]
    assert [(s["trust"], s["kvmsnap"]["state"]) for s in snaps] == [("pending", "pending")] * 2
    bad = run(lab, transport, svm="svm1", volumes=vs, name=name, state="confirmed", run_id="run-other")
    assert bad.failed and "belongs to run run-20260301T000000Z, not to run run-other" in bad["msg"], bad
    assert "svm1:vol_m1_%s" % transport in bad["msg"]
    check = run(lab, transport, check_mode=True, svm="svm1", volumes=vs, name=name, state="confirmed",
                run_id="run-20260301T000000Z", consistency="filesystem")
    assert check["changed"] and [s["trust"] for s in info(lab, transport, vs, name=name)["snapshots"]] == ["pending"] * 2
    for changed in (True, False):
        res = run(lab, transport, svm="svm1", volumes=vs, name=name, state="confirmed", run_id="run-20260301T000000Z",
                  consistency="filesystem")
        assert res["changed"] is changed and not res.failed, res
    snaps = info(lab, transport, vs, name=name)["snapshots"]
    assert [(s["trust"], s["consistency"]) for s in snaps] == [("good", "filesystem")] * 2
    # reserved policy names are refused for backups, accepted for a restore's safety snapshot
    bad = run(lab, transport, svm="svm1", volumes=vs, name="kvmsnap-prerestore_x", policy="prerestore")
    assert bad.failed and "reserved" in bad["msg"], bad
    res = run(lab, transport, svm="svm1", volumes=vs, name="kvmsnap-prerestore_%s" % transport, policy="prerestore",
              purpose="safety", run_id="restore-1")
    assert res["changed"] and not res.failed, res
    snaps = info(lab, transport, vs, name="kvmsnap-prerestore_%s" % transport)["snapshots"]
    assert [(s["trust"], s["consistency"]) for s in snaps] == [("good", "crash")] * 2


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_module_prune_four_late_and_good(lab, transport):
    """The failure seen: "it pruned a genuinely good backup while four late ones stayed". Sets, oldest first:
    good G1, late L1, L2, good G2, late L3, L4, pending P (live run). keep=1: G2 (newest good) stays, G1 goes, L1/L2
    (older than G2) go, L3/L4 (newer) stay, P stays. On the old code (newest `keep` per volume, any state) G2 went."""
    vs = ["vol_p1_%s" % transport, "vol_p2_%s" % transport]
    plan = [("G1", "good"), ("L1", "late"), ("L2", "late"), ("G2", "good"), ("L3", "late"), ("L4", "late"),
            ("P", None)]
    names = {}
    for i, (tag, mark) in enumerate(plan, start=1):
        names[tag] = "kvmsnap-daily_2026010%dT000000Z" % i
        make_set(lab, transport, vs, names[tag], mark)
    # the previous run left a pending set without confirming it (dead): recovered marks it late
    # (it is the newest, so the prune below keeps it)
    dead = "kvmsnap-daily_20260108T000000Z"
    assert run(lab, transport, svm="svm1", volumes=vs, name=dead, policy="daily", run_id="run-dead",
               until=int(time.time()) - 1)["changed"]
    check = run(lab, transport, check_mode=True, svm="svm1", volumes=vs, state="recovered",
                prune={"policy": "daily", "keep": 1})
    assert [m["name"] for m in check["marked_late"]] == [dead, dead] and check["changed"]
    res = run(lab, transport, svm="svm1", volumes=vs, state="recovered", prune={"policy": "daily", "keep": 1})
    assert not res.failed, res
    assert sorted(set((m["name"], m["run"]) for m in res["marked_late"])) == [(dead, "run-dead")]
    gone = [names[t] for t in ("G1", "L1", "L2")]
    assert sorted(set(p["name"] for p in res["pruned"])) == gone
    assert len(res["pruned"]) == 6 and res["partial"] == [] and res["not_pruned"] == []
    for vol in vs:
        left = [s["name"] for s in info(lab, transport, [vol], policy="daily")["snapshots"]]
        assert left == [names[t] for t in ("G2", "L3", "L4", "P")] + [dead], left
    trust = {s["name"]: s["trust"] for s in info(lab, transport, vs, policy="daily")["snapshots"]}
    assert trust[dead] == "late" and trust[names["P"]] == "pending" and trust[names["G2"]] == "good"
    # a second prune changes nothing: the newest good set and what is newer stay
    again = run(lab, transport, svm="svm1", volumes=vs, state="pruned", prune={"policy": "daily", "keep": 1})
    assert again["changed"] is False and again["pruned"] == [], again


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_module_prune_never_splits_a_set(lab, transport):
    """Retention used to prune per volume, so one backup could go on one volume and stay on another.
    A set with a busy member stays on all its volumes (reported, retried); a delete ONTAP refuses half-way is
    reported as a partial set, the member left is marked late and the next prune removes it."""
    vs = ["vol_s1_%s" % transport, "vol_s2_%s" % transport]
    names = ["kvmsnap-daily_2026020%dT000000Z" % i for i in range(1, 5)]
    for name in names:
        make_set(lab, transport, vs, name, "good")
    lab.admin("POST", "busy", {"svm": "svm1", "volume": vs[1], "snapshot": names[0], "owners": ["snapmirror"]})
    res = run(lab, transport, svm="svm1", volumes=vs, state="pruned", prune={"policy": "daily", "keep": 2})
    assert not res.failed, res
    # names[0] is busy on vs[1]: kept on both volumes; names[1] goes on both
    assert sorted((p["name"], p["volume"]) for p in res["pruned"]) == sorted((names[1], v) for v in vs)
    assert sorted((s["name"], s["volume"]) for s in res["not_pruned"]) == sorted((names[0], v) for v in vs)
    assert any("snapshot set %s not pruned on any of its 2 volume(s)" % names[0] in w["event"]["msg"]
               if isinstance(w, dict) else names[0] in str(w) for w in res["warnings"]), res["warnings"]
    for vol in vs:
        assert [s["name"] for s in info(lab, transport, [vol], policy="daily")["snapshots"]] == [names[0]] + names[2:]
    lab.admin("POST", "busy", {"svm": "svm1", "volume": vs[1], "snapshot": names[0], "owners": []})
    # now ONTAP refuses the delete on the second volume as busy (a clone or restore took it meanwhile):
    # the first delete goes through (skip 1), the second is refused
    if transport == "rest":
        fault = {"action": "error", "method": "DELETE", "path": "/api/storage/volumes/*/snapshots/*", "status": 409,
                 "code": "1638555"}
    else:
        fault = {"action": "error", "api": "snapshot-delete", "errno": "13024"}
    lab.admin("POST", "faults", dict(fault, skip=1, count=3, message="Snapshot copy %s is busy." % names[0]))
    res = run(lab, transport, svm="svm1", volumes=vs, state="pruned", prune={"policy": "daily", "keep": 2})
    assert not res.failed, res
    assert res["partial"] == [{"name": names[0], "deleted_on": ["svm1:%s" % vs[0]], "kept_on": ["svm1:%s" % vs[1]]}], res
    assert [(s["name"], s["volume"]) for s in res["not_pruned"]] == [(names[0], vs[1])]
    lab.admin("DELETE", "faults")
    left = info(lab, transport, [vs[1]], policy="daily")["snapshots"]
    assert [(s["name"], s["trust"]) for s in left] == [(names[0], "late"), (names[2], "good"), (names[3], "good")]
    res = run(lab, transport, svm="svm1", volumes=vs, state="pruned", prune={"policy": "daily", "keep": 2})
    assert [(p["name"], p["volume"]) for p in res["pruned"]] == [(names[0], vs[1])], res


def test_module_recovered_removes_dead_runs_temp_cg_only(lab):
    """Kill -9 of a run leaves a kvmsnap_tmp_* CG. state=recovered deletes the one whose until has
    passed (and an old-style one without until); a live run's (until in the future) stays."""
    now = int(time.time())
    dead = make_temp_cg(lab, "svm1", ["vol_a_rest"], now - 60)
    old_style = make_temp_cg(lab, "svm1", ["vol_b_rest"], None)
    live = make_temp_cg(lab, "svm1", ["vol_c_rest"], now + 600)
    other_svm = make_temp_cg(lab, "svm2", ["vol_other"], now - 60)
    check = run(lab, "rest", check_mode=True, svm="svm1", volumes=["vol_a_rest"], state="recovered")
    assert sorted(check["removed_cgs"]) == sorted([dead, old_style]) and check["changed"], check
    assert {cg["name"] for cg in client(lab, "rest").list_temp_cgs("svm1")} >= {dead, old_style, live}
    res = run(lab, "rest", svm="svm1", volumes=["vol_a_rest"], state="recovered")
    assert sorted(res["removed_cgs"]) == sorted([dead, old_style]) and res["changed"], res
    left = {cg["name"] for cg in client(lab, "rest").list_temp_cgs()}
    assert live in left and other_svm in left and dead not in left and old_style not in left
    assert run(lab, "rest", svm="svm1", volumes=["vol_a_rest"], state="recovered")["removed_cgs"] == []
    # ZAPI has no persistent CGs: nothing to list or remove, no failure
    res = run(lab, "zapi", svm="svm1", volumes=["vol_a_zapi"], state="recovered")
    assert not res.failed and res["removed_cgs"] == [], res
    client(lab, "rest").delete_cg({"uuid": [cg for cg in client(lab, "rest").list_temp_cgs() if cg["name"] == live][0]
                                   ["uuid"], "name": live, "svm": "svm1"})


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_snapshot_completing_after_the_client_gave_up_stays_pending_then_late(lab, transport):
    """A snapshot create that hangs past the deadline; the controller finishes it after the run gave
    up. It must not carry a comment that makes it a backup: it is pending (old code: the plain comment, which
    retention and `latest` took as a backup), never picked as good, and state=recovered marks it late."""
    vol = "vol_hang_%s" % transport
    name = "kvmsnap-daily_20260401T000000Z"
    until = int(time.time()) + 10
    if transport == "rest":  # the job stays running past the client's timeout, then completes
        lab.admin("POST", "faults", {"action": "job_running", "method": "POST",
                                     "path": "/api/storage/volumes/*/snapshots", "seconds": 3})
    else:  # the controller answers after the client's timeout, and creates the snapshot anyway
        lab.admin("POST", "faults", {"action": "hang", "api": "snapshot-create", "seconds": 3})
    res = run(lab, transport, svm="svm1", volumes=[vol], name=name, policy="daily", run_id="run-hung", until=until,
              timeout=1, retries=0)
    assert res.failed, res
    deadline = time.time() + 15
    while time.time() < deadline and not info(lab, transport, [vol], name=name)["snapshots"]:
        time.sleep(0.3)
    snaps = info(lab, transport, [vol], name=name)["snapshots"]
    assert len(snaps) == 1, snaps
    assert (snaps[0]["trust"], snaps[0]["good"], snaps[0]["kvmsnap"]["until"]) == ("pending", False, until), snaps
    # while its run could still confirm it, recovery leaves it alone
    early = run(lab, transport, svm="svm1", volumes=[vol], state="recovered")
    if time.time() < until:  # (on a loaded machine the call may end after until: then it may mark it)
        assert early["marked_late"] == [], early
    while time.time() <= until:
        time.sleep(0.2)
    res = run(lab, transport, svm="svm1", volumes=[vol], state="recovered")
    marked = early["marked_late"] + res["marked_late"]
    assert [(m["name"], m["run"]) for m in marked] == [(name, "run-hung")], (
        res, info(lab, transport, [vol])["snapshots"], time.time())
    snap = info(lab, transport, [vol], name=name)["snapshots"][0]
    assert (snap["trust"], snap["consistency"], snap["good"]) == ("late", "crash", False), snap
    # its run can no longer confirm it as good
    bad = run(lab, transport, svm="svm1", volumes=[vol], name=name, state="confirmed", run_id="run-hung")
    assert bad.failed and "already late" in bad["msg"], bad


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_latest_never_picks_a_late_or_pending_snapshot(lab, transport):
    """`restore` with `latest` picked the late snapshot. The restore role's catalog is built from
    ontap_snapshot_info's real output: latest = the newest GOOD set; late/pending ones only by name with
    kvmsnap_restore_allow_crash."""
    from ansible.errors import AnsibleFilterError

    from ansible_collections.kvmsnap.core.plugins.filter.roles import catalog, select_snapshot
    vs = ["vol_e_%s" % transport, "vol_f_%s" % transport]
    good, late, pending = ("kvmsnap-weekly_2026050%dT000000Z" % i for i in (1, 2, 3))
    for name, mark in ((good, "good"), (late, "late"), (pending, None)):
        run_id = "run-" + name.rsplit("_", 1)[-1]
        assert run(lab, transport, svm="svm1", volumes=vs, name=name, policy="weekly", run_id=run_id,
                   until=int(time.time()) + 600)["changed"]
        if mark:
            assert run(lab, transport, svm="svm1", volumes=vs, name=name, state="confirmed", run_id=run_id,
                       mark=mark)["changed"]
    res = info(lab, transport, vs, policy="weekly")
    records = catalog([{"item": "c1", "snapshots": res["snapshots"]}], ["c1:svm1:%s" % v for v in vs])
    assert [(r["name"], r["state"]) for r in records] == [(good, "good"), (late, "late"), (pending, "pending")]
    assert select_snapshot(records, {"kind": "latest", "value": "latest"})["name"] == good
    for name, state in ((late, "late"), (pending, "pending")):
        with pytest.raises(AnsibleFilterError, match="snapshot %s is %s" % (name, state)):
            select_snapshot(records, {"kind": "name", "value": name})
        assert select_snapshot(records, {"kind": "name", "value": name, "allow_crash": True})["name"] == name
    with pytest.raises(AnsibleFilterError, match="not a good backup"):
        select_snapshot(records, {"kind": "query", "value": "[-1]"})
