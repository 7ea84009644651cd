"""ontap_restore restore_paths: a file restored from a snapshot to a new path in the same volume (the source file
untouched), over REST 9.10.1+ (restore_to.restore_path), REST 9.8 (CLI passthrough) and ZAPI (restore-path),
against the lab's ONTAP simulator; refusals before any changing call."""

from __future__ import annotations

import pytest
from helpers.module_fixtures import run_module
from helpers.sim_fixtures import Sim, start_sim

PW = "netapp123"
LAB = {"cluster": {"name": "rp", "version": "9.13.1"},
       "users": [{"name": "admin", "password": PW, "role": "admin"}],
       "svms": [{"name": "svm1"}],
       "volumes": [{"name": n, "svm": "svm1"} for n in ("vol_rest", "vol_zapi")]}
LAB98 = dict(LAB, cluster={"name": "rp98", "version": "9.8.0"}, volumes=[{"name": "vol_cli", "svm": "svm1"}])
SNAP = "kvmsnap-daily_20260201T000000Z"


def run(sim: Sim, transport: str, module: str, check_mode: bool = False, **args):
    return run_module(module, {**sim.conn(transport), **args}, check_mode=check_mode)


def changing_calls(sim: Sim, since: int) -> list[dict]:
    out = []
    for c in sim.admin("GET", f"calls?since={since}")["calls"]:
        if c["path"].startswith("/_sim/"):
            continue
        api = c.get("api")
        if api and not (api.endswith("-get-iter") or api.endswith("-get") or api.startswith("system-get")
                        or api == "file-get-file-info"):
            out.append(c)
        elif not api and c["method"] in ("POST", "PATCH", "DELETE", "PUT"):
            out.append(c)
    return out


def last_seq(sim: Sim) -> int:
    calls = sim.admin("GET", "calls")["calls"]
    return calls[-1]["seq"] if calls else 0


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    new = start_sim(tmp_path_factory.mktemp("rp") / "data", LAB)
    old = start_sim(tmp_path_factory.mktemp("rp98") / "data", LAB98)
    for sim in (new, old):
        sim.admin("POST", "latency", {"scale": 0})
    yield {"new": new, "old": old}
    new.stop()
    old.stop()


@pytest.mark.parametrize("transport, cluster, vol, method", [
    ("rest", "new", "vol_rest", "rest_restore_to"),
    ("zapi", "new", "vol_zapi", "zapi"),
    ("rest", "old", "vol_cli", "cli_passthrough"),
])
def test_restore_to_a_new_path(sims, transport, cluster, vol, method):
    sim = sims[cluster]
    vdir = sim.data / "volumes" / "svm1" / vol
    (vdir / "images").mkdir(parents=True, exist_ok=True)
    disk = vdir / "images" / "vm1.qcow2"
    disk.write_bytes(b"backed up")
    assert run(sim, transport, "ontap_snapshot", svm="svm1", volumes=[vol], name=SNAP, policy="daily")["changed"]
    disk.write_bytes(b"live data, newer")
    copy = vdir / "images" / "vm1-copy.qcow2"

    seq = last_seq(sim)
    res = run(sim, transport, "ontap_restore", check_mode=True, svm="svm1", volume=vol, snapshot=SNAP,
              restore_paths={"images/vm1.qcow2": "/images/vm1-copy.qcow2"})
    assert res["changed"] and res["restored"] == [{"type": "file", "path": "/images/vm1.qcow2",
                                                   "restore_path": "/images/vm1-copy.qcow2", "method": "check_mode"}]
    assert changing_calls(sim, seq) == [] and not copy.exists()

    res = run(sim, transport, "ontap_restore", svm="svm1", volume=f"svm1:{vol}" if cluster == "new" else vol,
              snapshot=SNAP, restore_paths={f"/vol/{vol}/images/vm1.qcow2": "images/vm1-copy.qcow2"})
    assert not res.failed and res["restored"][0]["method"] == method, res
    assert res["restored"][0]["restore_path"] == "/images/vm1-copy.qcow2"
    assert copy.read_bytes() == b"backed up" and disk.read_bytes() == b"live data, newer"

    # the destination exists now: refused for every transport, in check mode too, before any changing call
    copy.write_bytes(b"someone's file")
    seq = last_seq(sim)
    for check in (True, False):
        res = run(sim, transport, "ontap_restore", check_mode=check, svm="svm1", volume=vol, snapshot=SNAP,
                  restore_paths={"images/vm1.qcow2": "images/vm1-copy.qcow2",
                                 "images/gone.qcow2": "images/gone-copy.qcow2"})
        assert res.failed, res
        assert "restore_paths: " in res["msg"] and "destination /images/vm1-copy.qcow2 already exists" in res["msg"]
        assert f"/images/gone.qcow2 is not in snapshot {SNAP}" in res["msg"] and f"svm1:{vol}" in res["msg"]
    assert changing_calls(sim, seq) == [] and copy.read_bytes() == b"someone's file"


@pytest.mark.parametrize("paths, needle", [
    ({"images/vm1.qcow2": "../etc/x"}, "restore_paths['images/vm1.qcow2']: '../etc/x' contains '..'"),
    ({"images/vm1.qcow2": ".snapshot/s/x"}, "'.snapshot' component"),
    ({"images/vm1.qcow2": "/vol/other/x"}, "is outside volume vol_rest"),
    ({"/vol/other/vm1.qcow2": "x"}, "is outside volume vol_rest"),
    ({"images/vm1.qcow2": "/images//vm1.qcow2"}, "the destination /images/vm1.qcow2 is the source itself"),
    ({"a": "c", "b": "c"}, "the destination /c is a source or a destination of another entry"),
    ({"a": "b", "b": "c"}, "is a source or a destination of another entry"),
    ({"images/vm1.qcow2": ""}, "empty path"),
])
def test_restore_paths_refused_before_any_call(sims, paths, needle):
    sim = sims["new"]
    seq = last_seq(sim)
    res = run(sim, "rest", "ontap_restore", svm="svm1", volume="vol_rest", snapshot=SNAP, restore_paths=paths)
    assert res.failed and needle in res["msg"], res
    assert sim.admin("GET", f"calls?since={seq}")["calls"] == [] or changing_calls(sim, seq) == []


def test_restore_paths_not_with_volume_mode_or_a_file_in_place(sims):
    sim = sims["new"]
    res = run(sim, "rest", "ontap_restore", svm="svm1", volume="vol_rest", snapshot=SNAP, mode="volume",
              confirm_volume_restore=True, restore_paths={"a": "b"})
    assert res.failed and "files/luns/restore_paths: not allowed with mode=volume" in res["msg"]
    res = run(sim, "rest", "ontap_restore", svm="svm1", volume="vol_rest", snapshot=SNAP, files=["b"],
              restore_paths={"a": "b"})
    assert res.failed and "the destination /b is also restored in place (files)" in res["msg"]


@pytest.mark.parametrize("transport", ["rest", "zapi"])
def test_simulator_refuses_a_destination_in_a_snapshot(sims, transport):
    """The client never sends one (refused above); ONTAP's snapshots are read-only, and so are the simulator's."""
    from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError
    from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_rest import OntapRest
    from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_zapi import OntapZapi
    sim = sims["new"]
    vol = "vol_rest" if transport == "rest" else "vol_zapi"
    params = dict(sim.conn(transport), timeout=30, retries=0, cert_file=None, key_file=None,
                  use_proxy=False, svm=None)
    client = (OntapRest if transport == "rest" else OntapZapi)(params, "test")
    with pytest.raises(OntapError, match="Snapshot copies are read-only"):
        client.restore_file("svm1", vol, SNAP, "/images/vm1.qcow2", restore_path="/.snapshot/%s/x" % SNAP)
