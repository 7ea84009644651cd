"""vm_quiesce on the lab libvirtd: real QEMU guests, the real module in a subprocess, the detached watchdog.

Minimal guests (boot sector, cli;hlt, near-zero CPU) for many-VM and watchdog tests; one real Linux guest with
qemu-guest-agent and a writer on /data for the freeze test (at most 2 TCG guests at once)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers.guest_fixtures import SYSTEM_URI
from helpers.vm_utils import resume_all, states, wait_for

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal, _lock

pytestmark = [pytest.mark.needs_libvirtd]
URI = SYSTEM_URI
RUNNING, PAUSED = 1, 3


def pid_alive(pid):
    return _journal.process_start(pid) is not None


def assert_clean(state_dir):
    assert _lock.holders(state_dir) == []
    assert all(_journal.is_final(j) for j in _journal.list_journals(state_dir))


def test_many_minimal_vms_suspend_release(module_runner, minimal_guests, tmp_path):
    doms = minimal_guests(8)
    sd = str(tmp_path / "state")
    ids = [d.name() for d in doms[:4]] + [d.UUIDString() for d in doms[4:]]
    try:
        t_q_start = time.monotonic()
        res = module_runner("vm_quiesce", {"uri": URI, "vms": ids, "mode": "suspend", "deadline": 60, "state_dir": sd})
        t_q_end = time.monotonic()
        assert not res.failed, res
        assert set(states(doms)) == {PAUSED}
        assert res["watchdog_pid"] and pid_alive(res["watchdog_pid"])
        assert max(v["quiesce_ms"] for v in res["vms"]) < 2000
        again = module_runner("vm_quiesce", {"uri": URI, "vms": ids[:1], "mode": "suspend", "state_dir": sd})
        assert again.failed and res["run_id"] in again["msg"]  # F18 (docs/dev/faults.md#f18): locked by the first run
        t_r_start = time.monotonic()
        rel = module_runner("vm_quiesce", {"uri": URI, "vms": ids, "state": "released", "state_dir": sd})
        t_r_end = time.monotonic()
        assert not rel.failed and rel["changed"], rel
        assert set(states(doms)) == {RUNNING}
        # each VM's pause window, measured on the host from its journal entry, lies between what the
        # caller can see from outside: paused before the first call returned, resumed during the second
        low, high = (t_r_start - t_q_end) * 1000.0, (t_r_end - t_q_start) * 1000.0
        assert all(low <= v["pause_ms"] <= high for v in rel["vms"]), (low, high, rel["vms"])
        # the watchdog sees the journal released and exits
        assert wait_for(lambda: not pid_alive(res["watchdog_pid"]), 3)
        rel2 = module_runner("vm_quiesce", {"uri": URI, "vms": ids, "state": "released", "state_dir": sd})
        assert not rel2.failed and not rel2["changed"]
        assert_clean(sd)
    finally:
        resume_all(doms)


CALLER = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    from helpers.module_fixtures import run_module
    res = run_module("vm_quiesce", json.loads(sys.argv[2]))
    print(json.dumps(res), flush=True)
    time.sleep(600)  # the 'playbook' goes on ... and is killed
""")


def test_watchdog_releases_at_deadline_after_caller_killed(minimal_guests, tmp_path):
    doms = minimal_guests(4)
    sd = str(tmp_path / "state")
    args = {"uri": URI, "vms": [d.name() for d in doms], "mode": "suspend", "deadline": 4, "state_dir": sd}
    tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    caller = subprocess.Popen([sys.executable, "-c", CALLER, tests_dir, json.dumps(args)], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        res = json.loads(caller.stdout.readline())
        assert not res.get("failed"), res
        t_quiesced = time.monotonic()
        assert set(states(doms)) == {PAUSED}
        os.killpg(caller.pid, signal.SIGKILL)  # ansible-playbook / controller dies
        caller.wait(10)
        assert set(states(doms)) == {PAUSED}  # nothing released it yet
        assert wait_for(lambda: set(states(doms)) == {RUNNING}, 4 + 3)
        released_after = time.monotonic() - t_quiesced
        assert 2.5 <= released_after <= 4 + 3, released_after
        # the watchdog records the release right after it (a journal write with fsyncs: some ms)
        assert wait_for(lambda: _journal.is_final(_journal.read(sd, res["run_id"])), 2)
        journal = _journal.read(sd, res["run_id"])
        assert journal["state"] == "released" and journal["released_by"].startswith("watchdog (deadline")
        assert wait_for(lambda: not pid_alive(res["watchdog_pid"]), 3)
        assert_clean(sd)
    finally:
        if caller.poll() is None:
            os.killpg(caller.pid, signal.SIGKILL)
            caller.wait()
        resume_all(doms)


def test_next_run_recovers_when_watchdog_also_died(module_runner, minimal_guests, tmp_path):
    doms = minimal_guests(2)
    sd = str(tmp_path / "state")
    try:
        res = module_runner("vm_quiesce", {"uri": URI, "vms": [doms[0].name()], "mode": "suspend", "deadline": 120,
                                           "state_dir": sd})
        assert not res.failed
        os.kill(res["watchdog_pid"], signal.SIGKILL)  # the whole host side died (e.g. OOM killer)
        assert wait_for(lambda: not pid_alive(res["watchdog_pid"]), 3)
        assert states(doms) == [PAUSED, RUNNING]
        nxt = module_runner("vm_quiesce", {"uri": URI, "vms": [doms[1].name()], "mode": "none", "state_dir": sd})
        assert not nxt.failed, nxt
        assert nxt["recovered"][0]["run_id"] == res["run_id"]
        assert nxt["recovered"][0]["vms"][0]["result"] == "resumed"
        assert states(doms) == [RUNNING, RUNNING]
        assert_clean(sd)
    finally:
        resume_all(doms)


@pytest.mark.needs_kvm_guests
@pytest.mark.slow
def test_freeze_real_guest_copy_is_consistent(module_runner, real_guest, tmp_path):
    guest = real_guest()
    sd = str(tmp_path / "state")
    assert wait_for(lambda: len(guest.writer_numbers()) >= 3, 30, step=0.5), "writer not running"
    before = guest.writer_numbers()  # read through the agent before the freeze
    res = module_runner("vm_quiesce", {"uri": URI, "vms": [guest.name], "mode": "freeze", "deadline": 60,
                                       "state_dir": sd, "agent_timeout": 10})
    copy = str(tmp_path / "copy.img")
    try:
        assert not res.failed, res
        vm = res["vms"][0]
        assert vm["action"] == "frozen" and vm["consistency"] == "filesystem" and vm["frozen_filesystems"] >= 1
        from guestlab import domain as gdom
        assert gdom.agent_command(guest.dom, "guest-fsfreeze-status") == "frozen"
        subprocess.run(["cp", "--sparse=always", guest.disk_path, copy], check=True)
    finally:
        rel = module_runner("vm_quiesce", {"uri": URI, "vms": [guest.name], "state": "released", "state_dir": sd})
    assert not rel.failed and rel["vms"][0]["release_result"] == "thawed", rel
    from guestlab import disks
    from guestlab import domain as gdom
    assert gdom.agent_command(guest.dom, "guest-fsfreeze-status") == "thawed"
    rc, out = disks.fsck_disk(copy)
    assert rc == 0, out
    numbers = disks.parse_writer_log(disks.read_disk_file(copy))
    assert numbers and numbers[-1] >= before[-1], (before[-5:], numbers[-5:])
    assert disks.writer_log_gaps(numbers) == []
    # the writer goes on after the thaw
    assert wait_for(lambda: guest.writer_numbers()[-1] > numbers[-1], 20, step=0.5)
    assert_clean(sd)
    # F8 (docs/dev/faults.md#f8): filesystems the user froze before the run are neither frozen again nor thawed by the release
    gdom.agent_command(guest.dom, "guest-fsfreeze-freeze")
    try:
        res = module_runner("vm_quiesce", {"uri": URI, "vms": [guest.name], "mode": "freeze", "state_dir": sd})
        assert not res.failed and res["vms"][0]["action"] == "none", res
        assert "frozen before this run" in res["vms"][0]["detail"]
        rel = module_runner("vm_quiesce", {"uri": URI, "vms": [guest.name], "state": "released", "state_dir": sd})
        assert not rel.failed
        assert gdom.agent_command(guest.dom, "guest-fsfreeze-status") == "frozen"  # still the user's freeze
    finally:
        gdom.agent_command(guest.dom, "guest-fsfreeze-thaw")
    assert_clean(sd)
    shutil.rmtree(sd, ignore_errors=True)


@pytest.fixture
def agentless_channel_guest(libvirt_system, tmp_path):
    """A minimal guest WITH a guest-agent channel but no agent behind it (F1, docs/dev/faults.md#f1: the agent never answers)."""
    from guestlab import domain as gdom
    dom = gdom.define_minimal_guest(libvirt_system, "%sdeadagent" % gdom.run_prefix(), str(tmp_path / "m"),
                                    with_agent=True)
    yield dom
    gdom.destroy_and_undefine(dom)


def test_unresponsive_agent_is_bounded(module_runner, agentless_channel_guest, tmp_path):
    dom = agentless_channel_guest
    sd = str(tmp_path / "state")
    args = {"uri": URI, "vms": [dom.name()], "state_dir": sd, "agent_timeout": 2}
    t0 = time.monotonic()
    res = module_runner("vm_quiesce", dict(args, mode="freeze"))
    assert time.monotonic() - t0 < 20
    assert res.failed and "freeze of VM" in res["msg"] and "nothing stays paused" in res["msg"], res
    assert dom.state()[0] == RUNNING
    # policy allows crash consistency: the VM keeps running, recorded as crash (never more than reached)
    res = module_runner("vm_quiesce", dict(args, mode="freeze", allow_crash_consistent=True))
    assert not res.failed and res["vms"][0]["consistency"] == "crash", res
    module_runner("vm_quiesce", dict(args, state="released"))
    # auto: no answer to guest-ping → suspended instead
    res = module_runner("vm_quiesce", dict(args, mode="auto"))
    assert not res.failed and res["vms"][0]["action"] == "suspended", res
    assert dom.state()[0] == PAUSED
    rel = module_runner("vm_quiesce", dict(args, state="released"))
    assert not rel.failed and dom.state()[0] == RUNNING
    assert_clean(sd)


def test_freeze_without_agent_channel_shared_fence(module_runner, minimal_guests, tmp_path):
    """The shared fence (vm_quiesce) in freeze mode on a VM with no guest-agent channel, crash consistency
    allowed: recorded untouched and crash, the release attempts no thaw and succeeds, nothing stays locked
    (docs/dev/faults.md#freeze-no-agent)."""
    dom = minimal_guests(1)[0]
    sd = str(tmp_path / "state")
    args = {"uri": URI, "vms": [dom.name()], "state_dir": sd, "agent_timeout": 2, "run_id": "shared-1"}
    res = module_runner("vm_quiesce", dict(args, mode="freeze", allow_crash_consistent=True))
    assert not res.failed, res
    vm = res["vms"][0]
    assert (vm["action"], vm["consistency"]) == ("none", "crash") and dom.state()[0] == RUNNING, vm
    rel = module_runner("vm_quiesce", dict(args, state="released"))
    assert not rel.failed and "thaw" not in json.dumps(rel["vms"]), rel
    assert_clean(sd)


@pytest.mark.needs_kvm_guests
@pytest.mark.slow
def test_auto_mode_mixes_freeze_and_suspend(module_runner, real_guest, minimal_guests, tmp_path):
    guest = real_guest()
    mini = minimal_guests(1)[0]  # no guest agent channel: auto suspends it
    sd = str(tmp_path / "state")
    try:
        res = module_runner("vm_quiesce", {"uri": URI, "vms": [guest.name, mini.name()], "mode": "auto",
                                           "state_dir": sd, "agent_timeout": 3})
        assert not res.failed, res
        by = {v["name"]: v for v in res["vms"]}
        assert by[guest.name]["action"] == "frozen" and by[guest.name]["consistency"] == "filesystem"
        assert by[mini.name()]["action"] == "suspended" and by[mini.name()]["consistency"] == "suspended"
        assert "suspended instead" in by[mini.name()]["detail"]
        assert res["consistency"] == "suspended"
    finally:
        rel = module_runner("vm_quiesce", {"uri": URI, "vms": [guest.name, mini.name()], "state": "released",
                                           "state_dir": sd})
    assert not rel.failed, rel
    assert mini.state()[0] == RUNNING
    assert_clean(sd)
