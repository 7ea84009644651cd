"""Snapshot trust on the ONTAP side (issue 7 §1, §7): pending/good/late snapshots, orphan recovery, temporary
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

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect, temp_cg_until
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError
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
    # a rerun of the same name and run id is a no-op; another run's same name is refused (F11)
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
