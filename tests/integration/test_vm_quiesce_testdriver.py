"""vm_quiesce fast paths on libvirt's in-process test driver (test:///default): real libvirt API calls,
no daemon. The driver lives inside this process, so the fence runs in-process here (no watchdog)."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _fence, _fence_errors, _fence_quiesce, _journal, _lock

libvirt = pytest.importorskip("libvirt")
URI = "test:///default"
RUNNING, PAUSED = 1, 3


@pytest.fixture
def conn():
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    c = libvirt.open(URI)
    yield c
    c.close()


@pytest.fixture
def vms(conn):
    """factory: n running test-driver domains; all destroyed/undefined afterwards."""
    made = []
    base = re.sub(r"<uuid>.*</uuid>", "", conn.lookupByName("test").XMLDesc())

    def make(n, prefix="fq"):
        names = []
        for _i in range(n):
            name = "%s-%d-%d" % (prefix, os.getpid(), len(made))
            dom = conn.defineXML(base.replace("<name>test</name>", "<name>%s</name>" % name))
            dom.create()
            made.append(dom)
            names.append(name)
        return names

    yield make
    for dom in made:
        try:
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        except libvirt.libvirtError:
            pass


@pytest.fixture
def state_dir(tmp_path):
    return str(tmp_path / "state")


def before_quiesce(monkeypatch, hook):
    """Run hook(fence, vms) right before the fence's parallel quiesce (a real fault at that moment)."""
    quiesce = _fence.Fence.quiesce

    def wrapped(self, vms, *args, **kwargs):
        hook(self, vms)
        return quiesce(self, vms, *args, **kwargs)
    monkeypatch.setattr(_fence.Fence, "quiesce", wrapped)


def before_release(monkeypatch, hook):
    """Run hook(fence, outcomes) once the release workers are prepared, right before they are fired."""
    prepare = _fence.Fence.prepare_release

    def wrapped(self, outcomes):
        gang = prepare(self, outcomes)
        hook(self, gang.items)
        return gang
    monkeypatch.setattr(_fence.Fence, "prepare_release", wrapped)


def params(state_dir, names, **kw):
    p = dict(uri=URI, vms=names, mode="suspend", state="quiesced", deadline=60, state_dir=state_dir, retries=2,
             agent_timeout=5, allow_crash_consistent=False)
    p.update(kw)
    return p


def states(conn, names):
    return [conn.lookupByName(n).state()[0] for n in names]


def assert_clean(state_dir):
    assert _lock.holders(state_dir) == []
    for j in _journal.list_journals(state_dir):
        assert _journal.is_final(j), j


def test_many_vms_suspend_and_release(conn, vms, state_dir):
    names = vms(24)
    res = _fence_quiesce.run_quiesced(params(state_dir, names))
    assert res["changed"] and len(res["vms"]) == 24
    assert set(states(conn, names)) == {PAUSED}
    assert {v["action"] for v in res["vms"]} == {"suspended"}
    assert res["consistency"] == "suspended"
    j = _journal.read(state_dir, res["run_id"])
    assert j["state"] == "quiesced" and {v["action"] for v in j["vms"]} == {"suspended"}
    assert len(_lock.holders(state_dir)) == 24
    rel = _fence_quiesce.run_released(params(state_dir, names, state="released"))
    assert rel["changed"] and {v["release_result"] for v in rel["vms"]} == {"resumed"}
    assert set(states(conn, names)) == {RUNNING}
    assert_clean(state_dir)
    # idempotent: a second release changes nothing and succeeds (F9, docs/dev/faults.md#f9)
    again = _fence_quiesce.run_released(params(state_dir, names, state="released"))
    assert not again["changed"]
    assert all(v["release_result"].startswith("not quiesced by kvmsnap") for v in again["vms"])


def test_user_paused_vm_is_untouched(conn, vms, state_dir):
    names = vms(3)
    conn.lookupByName(names[1]).suspend()  # the user paused it (F8, docs/dev/faults.md#f8)
    res = _fence_quiesce.run_quiesced(params(state_dir, names))
    by = {v["name"]: v for v in res["vms"]}
    assert by[names[1]]["action"] == "none" and "untouched" in by[names[1]]["detail"]
    assert by[names[1]]["consistency"] == "crash"
    _fence_quiesce.run_released(params(state_dir, names, state="released"))
    assert states(conn, names) == [RUNNING, PAUSED, RUNNING]  # still paused: not ours
    conn.lookupByName(names[1]).resume()
    assert_clean(state_dir)


def test_partial_failure_releases_quiesced_leaves_others(conn, vms, state_dir, monkeypatch):
    names = vms(5)
    victim = names[2]

    def break_one(_fence_obj, _todo):  # real fault: VM3 is destroyed just before the quiesce
        conn.lookupByName(victim).destroy()
    before_quiesce(monkeypatch, break_one)
    with pytest.raises(_fence_errors.FenceError) as info:
        _fence_quiesce.run_quiesced(params(state_dir, names))
    assert victim in str(info.value) and "released again" in str(info.value)
    out = {v["name"]: v for v in info.value.result["vms"]}
    assert out[victim]["error"]
    for name in names:
        if name != victim:
            assert out[name]["release_result"] == "resumed"
    assert [s for n, s in zip(names, states(conn, names)) if n != victim] == [RUNNING] * 4
    assert conn.lookupByName(victim).state()[0] == 5  # shut off by the fault, not started by us
    assert_clean(state_dir)


def test_unknown_vms_rejected_before_touching(conn, vms, state_dir):
    names = vms(2)
    with pytest.raises(_fence_errors.FenceError) as info:
        _fence_quiesce.run_quiesced(params(state_dir, [names[0], "no-such-vm", "00000000-0000-0000-0000-000000000000",
                                                       names[1], "$(id)"]))
    msg = str(info.value)
    for bad in ("no-such-vm", "00000000-0000-0000-0000-000000000000", "$(id)"):
        assert bad in msg
    assert info.value.result["unknown_vms"] == ["no-such-vm", "00000000-0000-0000-0000-000000000000", "$(id)"]
    assert states(conn, names) == [RUNNING, RUNNING]
    assert _journal.list_journals(state_dir) == []


def test_resumed_by_someone_else_is_success(conn, vms, state_dir):
    names = vms(2)
    _fence_quiesce.run_quiesced(params(state_dir, names))
    conn.lookupByName(names[0]).resume()  # an operator resumed it meanwhile (F9, docs/dev/faults.md#f9)
    rel = _fence_quiesce.run_released(params(state_dir, names, state="released"))
    assert {v["name"]: v["release_result"] for v in rel["vms"]} == {names[0]: "already running",
                                                                    names[1]: "resumed"}
    assert_clean(state_dir)


def test_freeze_mode_and_auto(conn, vms, state_dir):
    names = vms(3)
    res = _fence_quiesce.run_quiesced(params(state_dir, names, mode="freeze"))
    assert {v["action"] for v in res["vms"]} == {"frozen"}
    assert {v["consistency"] for v in res["vms"]} == {"filesystem"}
    assert set(states(conn, names)) == {RUNNING}  # frozen, not paused
    rel = _fence_quiesce.run_released(params(state_dir, names, state="released"))
    assert {v["release_result"] for v in rel["vms"]} == {"thawed"}
    # the test driver cannot run guest-ping: auto tries the freeze directly
    res = _fence_quiesce.run_quiesced(params(state_dir, names, mode="auto"))
    assert {v["action"] for v in res["vms"]} == {"frozen"}
    _fence_quiesce.run_released(params(state_dir, names, state="released"))
    assert_clean(state_dir)


def test_mode_none_pauses_nothing(conn, vms, state_dir):
    names = vms(2)
    res = _fence_quiesce.run_quiesced(params(state_dir, names, mode="none"))
    assert not res["changed"] and {v["consistency"] for v in res["vms"]} == {"crash"}
    assert states(conn, names) == [RUNNING, RUNNING]
    assert_clean(state_dir)


def test_second_run_fails_fast_on_lock(conn, vms, state_dir):
    names = vms(2)
    first = _fence_quiesce.run_quiesced(params(state_dir, names))
    t0 = time.monotonic()
    with pytest.raises(_fence_errors.FenceError) as info:
        _fence_quiesce.run_quiesced(params(state_dir, [names[1]]))
    assert time.monotonic() - t0 < 2
    assert first["run_id"] in str(info.value) and "pid %d" % os.getpid() in str(info.value)
    assert info.value.result["holder"]["run_id"] == first["run_id"]
    _fence_quiesce.run_released(params(state_dir, names, state="released"))
    assert_clean(state_dir)


def test_stale_run_recovered_first(conn, vms, state_dir):
    names = vms(2)
    first = _fence_quiesce.run_quiesced(params(state_dir, [names[0]]))
    # make the run look dead: its owner pid is gone (kill -9 of a module without a watchdog)
    _journal.update(state_dir, first["run_id"], lambda j: j.update(owners=[{"pid": 2 ** 22 - 3, "start": 1,
                                                                            "role": "module"}]))
    assert states(conn, names) == [PAUSED, RUNNING]
    res = _fence_quiesce.run_quiesced(params(state_dir, [names[1]], mode="none"))
    assert [r["run_id"] for r in res["recovered"]] == [first["run_id"]]
    assert res["recovered"][0]["vms"][0]["result"] == "resumed" and "gone" in res["recovered"][0]["reason"]
    assert states(conn, names) == [RUNNING, RUNNING]
    assert _journal.read(state_dir, first["run_id"])["state"] == "recovered"
    assert_clean(state_dir)


def test_past_deadline_run_recovered_and_lock_taken_over(conn, vms, state_dir, monkeypatch):
    monkeypatch.setattr(_journal, "DEADLINE_GRACE", 0.2)
    names = vms(1)
    first = _fence_quiesce.run_quiesced(params(state_dir, names, deadline=1))
    time.sleep(1.5)
    res = _fence_quiesce.run_quiesced(params(state_dir, names))
    assert res["recovered"][0]["run_id"] == first["run_id"] and "deadline" in res["recovered"][0]["reason"]
    assert states(conn, names) == [PAUSED]  # quiesced again by the new run
    _fence_quiesce.run_released(params(state_dir, names, state="released"))
    assert_clean(state_dir)


def test_check_mode_touches_nothing(conn, vms, state_dir):
    names = vms(2)
    res = _fence_quiesce.run_quiesced(params(state_dir, names), check_mode=True)
    assert res["changed"] and {v["action"] for v in res["vms"]} == {"suspended"} and res["run_id"] is None
    assert states(conn, names) == [RUNNING, RUNNING]
    assert not os.path.exists(state_dir)
    with pytest.raises(_fence_errors.FenceError):
        _fence_quiesce.run_quiesced(params(state_dir, ["ghost"]), check_mode=True)


def test_uuid_and_name_of_same_vm_once(conn, vms, state_dir):
    names = vms(1)
    vm_uuid = conn.lookupByName(names[0]).UUIDString()
    res = _fence_quiesce.run_quiesced(params(state_dir, [names[0], vm_uuid.upper()]))
    assert len(res["vms"]) == 1 and res["vms"][0]["uuid"] == vm_uuid
    _fence_quiesce.run_released(params(state_dir, [vm_uuid], state="released"))
    assert_clean(state_dir)


def test_module_entry_point(module_runner, tmp_path):
    """The real module in a subprocess (its own test driver instance): quiesce, check mode, bad input."""
    sd = str(tmp_path / "mstate")
    res = module_runner("vm_quiesce", {"uri": URI, "vms": ["test"], "mode": "suspend", "state_dir": sd})
    assert not res.failed, res
    assert res["vms"][0]["action"] == "suspended" and res["watchdog_pid"] is None
    assert "test driver" in json.dumps(res.get("warnings", []))
    res = module_runner("vm_quiesce", {"uri": URI, "vms": ["test", "ghost1", "ghost2"], "state_dir": sd})
    assert res.failed and "ghost1" in res["msg"] and "ghost2" in res["msg"]
    res = module_runner("vm_quiesce", {"uri": URI, "vms": ["test"], "deadline": 0, "state_dir": sd})
    assert res.failed and "deadline" in res["msg"]
    res = module_runner("vm_quiesce", {"uri": URI, "vms": ["test"], "state_dir": sd}, check_mode=True)
    assert not res.failed and res["changed"] and res["vms"][0]["action"] == "auto" and res["run_id"] is None
    journals = [n for n in os.listdir(os.path.join(sd, "runs")) if n.endswith(".json")]
    with open(os.path.join(sd, "runs", journals[0])) as fh:
        assert json.load(fh)["module"] == "vm_quiesce"


@pytest.mark.parametrize("module", ["vm_quiesce", "vm_info"])
def test_uri_from_environment(module_runner, tmp_path, module):
    """No uri in the task: LIBVIRT_DEFAULT_URI (e.g. from an AWX credential) picks the connection."""
    args = {"vms": ["test"]}
    if module == "vm_quiesce":
        args["state_dir"] = str(tmp_path / "envstate")
    else:
        args["strict"] = False  # the test driver's disk is on no datastore
    res = module_runner(module, args, check_mode=True, env={"LIBVIRT_DEFAULT_URI": URI})
    assert not res.failed, res
    assert [v["name"] for v in res["vms"]] == ["test"]
    assert res["invocation"]["module_args"]["uri"] == URI


def test_connection_lost_midway_reconnects(conn, vms, state_dir, monkeypatch):
    """F7 (docs/dev/faults.md#f7): the libvirt connection dies between resolve and quiesce, and again before the release
    (closed under the fence: VIR_ERR_INVALID_CONN); the fence reconnects and finishes."""
    names = vms(4)
    seen = {}

    def kill_connections(fence_obj, _todo):
        seen["fence"] = fence_obj
        for c in list(fence_obj.sc._conns):
            if c is not None:
                c.close()
    with monkeypatch.context() as patch:
        before_quiesce(patch, kill_connections)
        res = _fence_quiesce.run_quiesced(params(state_dir, names))
    assert {v["action"] for v in res["vms"]} == {"suspended"} and not any(v["error"] for v in res["vms"])
    assert seen["fence"].sc.reconnects >= 1
    assert set(states(conn, names)) == {PAUSED}
    before_release(monkeypatch, kill_connections)
    rel = _fence_quiesce.run_released(params(state_dir, names, state="released"))
    assert {v["release_result"] for v in rel["vms"]} == {"resumed"}
    assert set(states(conn, names)) == {RUNNING}
    assert_clean(state_dir)
