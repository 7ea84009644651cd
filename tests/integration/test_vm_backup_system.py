"""vm_backup on the lab libvirtd against the ONTAP simulator: kill -9 / SIGTERM of the module in the middle of the
snapshot (F5 docs/dev/faults.md#f5, F6 docs/dev/faults.md#f6), and a real writing guest frozen for a snapshot whose
disk image passes e2fsck."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
from guestlab import labd
from helpers.guest_fixtures import SYSTEM_URI
from helpers.vm_utils import resume_all, states, wait_for

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal, _lock

pytestmark = [pytest.mark.needs_libvirtd]
URI = SYSTEM_URI
RUNNING, PAUSED = 1, 3
MODULE = "ansible_collections.kvmsnap.core.plugins.modules.vm_backup"


@pytest.fixture
def sim(ontap_sim):
    ontap_sim.admin("DELETE", "/_sim/faults")
    yield ontap_sim
    ontap_sim.admin("DELETE", "/_sim/faults")


def start_module(args):
    fd, path = tempfile.mkstemp(suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=False)}, fh)
    proc = subprocess.Popen([sys.executable, "-m", MODULE, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    return proc, path


def stop_module(proc, path):
    """The module process of start_module killed if it still runs, its arguments file removed."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    os.unlink(path)


def backup_args(sim, state_dir, vms, **kw):
    args = {"uri": URI, "vms": vms, "mode": "suspend", "fence": "direct", "deadline": 30, "state_dir": state_dir,
            "volumes": ["svm1:vol_ds1"], "name": "kvmsnap-sys_%s" % uuid.uuid4().hex[:8]}
    args.update(sim.conn())
    args.update(kw)
    return args


def only_journal(state_dir):
    journals = _journal.list_journals(state_dir)
    assert len(journals) == 1
    return journals[0]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_module_killed_during_snapshot_vms_released(sim, minimal_guests, tmp_path, sig):
    doms = minimal_guests(3)
    sd = str(tmp_path / "state")
    sim.admin("POST", "/_sim/faults", {"action": "hang", "method": "POST", "path": "/api/*snapshots",
                                       "count": 1, "seconds": 8})
    proc, path = start_module(backup_args(sim, sd, [d.name() for d in doms]))
    try:
        assert wait_for(lambda: set(states(doms)) == {PAUSED}, 30), "vm_backup did not quiesce"
        time.sleep(0.3)  # inside the (hanging) snapshot call
        t_kill = time.monotonic()
        proc.send_signal(sig)
        out, _err = proc.communicate(timeout=20)
        assert wait_for(lambda: set(states(doms)) == {RUNNING}, 5), states(doms)
        released_after = time.monotonic() - t_kill
        assert released_after < 3.0, released_after  # not the 30 s deadline
        journal = only_journal(sd)
        assert journal["state"] == "released"
        if sig == signal.SIGKILL:
            assert journal["released_by"] == "watchdog (owner process gone)"
        else:  # F5 (docs/dev/faults.md#f5): the module's own signal handler released them and reported it
            res = json.loads(out.strip().splitlines()[-1])
            assert res["failed"] and "signal" in res["msg"] and "released" in res["msg"]
            assert {v["release_result"] for v in res["vms"]} == {"resumed"}
        assert wait_for(lambda: _lock.holders(sd) == [], 3)  # the watchdog removes them right after the journal
        watchdogs = [o for o in journal["owners"] if o["role"] == "watchdog"]
        assert wait_for(lambda: not any(_journal.owner_alive(o) for o in watchdogs), 3)
    finally:
        stop_module(proc, path)
        resume_all(doms)


@pytest.mark.needs_kvm_guests
@pytest.mark.slow
def test_backup_real_guest_freeze_snapshot_is_consistent(sim, real_guest, tmp_path, module_runner):
    vol = sim.data / "volumes" / "svm1" / "vol_ds2"
    guest = real_guest(disk_dir=vol, size_mib=32)
    sd = str(tmp_path / "state")
    try:
        assert wait_for(lambda: len(guest.writer_numbers()) >= 3, 30, step=0.5), "writer not running"
        before = guest.writer_numbers()
        args = backup_args(sim, sd, [guest.name], mode="freeze", volumes=None, agent_timeout=10,
                           datastores=[{"path": str(vol), "svm": "svm1", "volume": "vol_ds2"}])
        res = module_runner("vm_backup", args, timeout=120)
        assert not res.failed, res
        vm = res["vms"][0]
        assert vm["action"] == "frozen" and vm["consistency"] == "filesystem" and vm["release_result"] == "thawed"
        assert res["volumes"] == ["svm1:vol_ds2"] and res["snapshots"][0]["volume"] == "vol_ds2"
        image = vol / ".snapshot" / args["name"] / os.path.basename(guest.disk_path)
        assert image.is_file()
        from guestlab import disks
        copy = str(tmp_path / "snap-copy.img")
        shutil.copyfile(image, copy)
        rc, out = disks.fsck_disk(copy)
        assert rc == 0, out
        numbers = disks.parse_writer_log(disks.read_disk_file(copy))
        assert numbers and numbers[-1] >= before[-1] and disks.writer_log_gaps(numbers) == []
        assert wait_for(lambda: guest.writer_numbers()[-1] > numbers[-1], 20, step=0.5)  # thawed, writing
    finally:
        snapdir = vol / ".snapshot"
        for name in os.listdir(snapdir) if snapdir.is_dir() else []:
            if name.startswith("kvmsnap-sys_"):
                shutil.rmtree(snapdir / name, ignore_errors=True)


def _restart_libvirtd() -> None:
    """Stop the LAB's libvirtd (by the lab's pid file; never the host's) and start it again through the lab tool
    (guests keep running: QEMU is not a child of the daemon, and the new daemon starts in the lab's namespace)."""
    pid = labd.stop_daemon("libvirtd")
    assert pid, "the lab's libvirtd was not running (tests/lab/labd status)"
    labd.start()
    assert labd.pid_of("libvirtd") not in (None, pid), "the lab's libvirtd did not come back"


def test_libvirtd_restart_inside_the_fence_vms_released(sim, minimal_guests, tmp_path, module_runner):
    """F7 (docs/dev/faults.md#f7): libvirtd restarts while the VMs are paused for the snapshot; vm_backup reconnects and releases them."""
    if os.geteuid() != 0:
        pytest.skip("restarting the lab's libvirtd needs root")
    doms = minimal_guests(3)
    sd = str(tmp_path / "state")
    # the snapshot call hangs 4 s: the window in which the daemon goes away and comes back
    sim.admin("POST", "/_sim/faults", {"action": "hang", "method": "POST", "path": "/api/*snapshots",
                                       "count": 1, "seconds": 4})
    proc, path = start_module(backup_args(sim, sd, [d.name() for d in doms], retries=5))
    try:
        assert wait_for(lambda: set(states(doms)) == {PAUSED}, 30), "vm_backup did not quiesce"
        _restart_libvirtd()
        out, err = proc.communicate(timeout=60)
        res = json.loads(out.strip().splitlines()[-1])
        assert not res.get("failed"), (res, err)
        import libvirt
        conn = libvirt.open(URI)  # the fixtures' connection died with the old daemon
        try:
            assert [conn.lookupByUUIDString(d.UUIDString()).state()[0] for d in doms] == [RUNNING] * 3
        finally:
            conn.close()
        assert {v["release_result"] for v in res["vms"]} == {"resumed"}, res["vms"]
        assert res["snapshots"] and only_journal(sd)["state"] == "released"
    finally:
        stop_module(proc, path)


def test_freeze_without_agent_channel_is_crash_consistent_when_allowed(sim, minimal_guests, module_runner, tmp_path):
    """Freeze mode on a VM with no guest-agent channel, allow_crash_consistent: no thaw is attempted, the VM is
    reported crash-consistent, the snapshot is confirmed good with consistency=crash, and no lock or open journal
    is left: an immediate second run goes ahead. Without allow_crash_consistent the run fails before the snapshot,
    and leaves no lock either."""
    from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect
    from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import parse_comment
    doms = minimal_guests(1)
    name = doms[0].name()
    state_dir = str(tmp_path / "state")
    args = backup_args(sim, state_dir, [name], mode="freeze", agent_timeout=2, allow_crash_consistent=True,
                       kvm_host="kvm-inv-1")
    res = module_runner("vm_backup", args)
    assert res.rc == 0 and not res.get("failed"), res
    vm = res["vms"][0]
    assert vm["consistency"] == "crash" and vm["action"] == "none" and not vm.get("release_error"), vm
    assert "thaw" not in json.dumps(vm) and "allow_crash_consistent" in (vm.get("detail") or ""), vm
    assert res["trust"] == "good" and res["consistency"] == "crash"
    client = connect(dict(sim.conn(), timeout=30, retries=1, cert_file=None, key_file=None), "test")
    meta = parse_comment(client.get_snapshot("svm1", "vol_ds1", args["name"])["comment"])
    assert (meta["state"], meta["consistency"], meta["host"]) == ("good", "crash", "kvm-inv-1"), meta
    assert _lock.holders(state_dir) == []
    assert all(j["state"] in _journal.FINAL_STATES for j in _journal.list_journals(state_dir))
    assert states(doms) == [RUNNING]

    t0 = time.monotonic()
    again = module_runner("vm_backup", dict(args, name="kvmsnap-sys_%s" % uuid.uuid4().hex[:8]))
    assert again.rc == 0 and again["trust"] == "good", again
    assert time.monotonic() - t0 < 10

    refused = module_runner("vm_backup", dict(args, allow_crash_consistent=False,
                                              name="kvmsnap-sys_%s" % uuid.uuid4().hex[:8]))
    assert refused.get("failed") and "agent is not configured" in refused["msg"], refused
    assert "thaw" not in refused["msg"] and "no snapshot was taken" in refused["msg"]
    again = module_runner("vm_backup", dict(args, name="kvmsnap-sys_%s" % uuid.uuid4().hex[:8]))
    assert again.rc == 0 and again["trust"] == "good", again
