"""How a restore runs, through ansible-playbook against the lab.

The lab's libvirtd (tests/lab/labd), minimal boot-sector guests whose disks live in the ONTAP simulator's volume, one
backup taken by the backup playbook. What the old code did, each now refused or repaired:

- docs/dev/faults.md#restore-lock: the restore held no lock shared with the backup (it locked elsewhere, and not
  during the disk restore): a restore during a backup overwrote the paused VM's disk. Now one lock per VM, taken in
  the pre-flight and held to the end; a backup holding it refuses the restore and vice versa.
- docs/dev/faults.md#restore-order: the safety snapshot was taken before the VM was shut down (writes of the shutdown in neither copy), and
  the domain XML/NVRAM (outside ONTAP) were overwritten with no copy. Now: stop, safety snapshot, overwrite; the XML
  and NVRAM are copied aside first (state dir, per run, 0600) and the report names where.
- docs/dev/faults.md#restore-partial, #restore-resume: the second of two disks failing left the VM shut off with one disk restored ("restored nothing");
  after kill -9 a rerun never restarted the VM that was running. Now per-file results, the files already overwritten
  rolled back from the safety snapshot and the VM running again; the plan is journaled and a rerun completes it.
- docs/dev/faults.md#restore-report-exists: a safety snapshot that failed was still named in the report and the error.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers.playbook_lab import PLAYBOOK, Lab, run_output, sha

from ansible_collections.kvmsnap.core.plugins.module_utils import _lock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
import guestlab
from guestlab import labd
from guestlab.domain import _disk_xml

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]

SNAP = "kvmsnap-daily_exec1"
RUNNING = 1
SHUTOFF = 5
MARK = b"LIVE-DATA-AFTER-THE-BACKUP"
# libvirt's NVRAM dir as the lab daemon and the playbooks (run in its namespace) see it, and where that is
# from the tests' side: the host's own /var/lib/libvirt is never written
NVRAM_DIR = Path("/var/lib/libvirt/qemu/nvram")
# the REST single-file restore: PATCH /api/storage/volumes/<uuid> (never a snapshot's own PATCH)
RESTORE_PATCH = "/api/storage/volumes/" + "????????-????-????-????-????????????"


def _define_two_disk_guest(lab: Lab, key: str) -> None:
    name = lab.name(key)
    vol = lab.vol("s1", "vol_ds1")
    boot = guestlab.domain.make_boot_sector(str(vol / ("%s.img" % name)))
    data = vol / ("%s-data.img" % name)
    data.write_bytes(b"\0" * 65536)
    xml = guestlab.domain.minimal_guest_xml(name, boot).replace(
        "<controller type='usb'", _disk_xml(str(data), "hdb", "raw", bus="ide") + "\n    <controller type='usb'")
    dom = lab.conn.defineXML(xml)
    dom.create()
    lab.doms[key] = dom


def _define_nvram_guest(lab: Lab, key: str) -> Path:
    """A shut-off VM with an NVRAM file outside ONTAP (defined only: the lab has no UEFI firmware to boot)."""
    name = lab.name(key)
    boot = guestlab.domain.make_boot_sector(str(lab.vol("s1", "vol_ds1") / ("%s.img" % name)))
    in_daemon = NVRAM_DIR / ("%s_VARS.fd" % name)
    nvram = labd.host_path(str(in_daemon))
    nvram.parent.mkdir(parents=True, exist_ok=True)
    nvram.write_bytes(b"NVRAM-AT-BACKUP".ljust(4096, b"\0"))
    xml = guestlab.domain.minimal_guest_xml(name, boot).replace(
        "<boot dev='hd'/>", "<loader readonly='yes' type='pflash'>/usr/share/qemu/bios.bin</loader>"
        "<nvram>%s</nvram><boot dev='hd'/>" % in_daemon)
    lab.doms[key] = lab.conn.defineXML(xml)
    return nvram


@pytest.fixture(scope="module")
def lab(libvirt_system, tmp_path_factory):
    base = tmp_path_factory.mktemp("exec")
    lab = Lab(base, libvirt_system)
    lab.prefix = "%sexec-" % guestlab.run_prefix()
    try:
        lab.start_sim("s1")
        _define_two_disk_guest(lab, "v")
        lab.nvram = _define_nvram_guest(lab, "n")
        lab.ds1 = lab.datastore("s1", "vol_ds1")
        lab.inv = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("v"), lab.name("n")]}},
                                {"c1": lab.controller("s1")}, kvmsnap_datastores=[lab.ds1])
        proc = lab.run("backup", lab.inv, {"kvmsnap_snapshot_name": SNAP})
        assert proc.returncode == 0, run_output(proc)
        lab.uuid = lab.conn.lookupByName(lab.name("v")).UUIDString()
        lab.state_dir = base / "state"
        yield lab
    finally:
        lab.close()
        for f in labd.host_path(str(NVRAM_DIR)).glob("%s*" % lab.prefix):
            f.unlink()


def disks(lab) -> list[Path]:
    vol = lab.vol("s1", "vol_ds1")
    return [vol / ("%s.img" % lab.name("v")), vol / ("%s-data.img" % lab.name("v"))]


def in_snapshot(lab, path: Path, snap: str = SNAP) -> Path:
    return path.parent / ".snapshot" / snap / path.name


@pytest.fixture
def live(lab):
    """Each test starts with v running, its disks changed since the backup (markers), no faults, no locks."""
    sim = lab.sims["s1"]
    sim.admin("DELETE", "faults")
    dom = lab.conn.lookupByName(lab.name("v"))
    if not dom.isActive():
        dom.create()
    for path in disks(lab):
        with open(path, "r+b") as fh:
            fh.seek(4096)
            fh.write(MARK)
    lab.before = {p: sha(p) for p in disks(lab)}
    lab.dom_id = dom.ID()
    yield lab
    sim.admin("DELETE", "faults")


def restore(lab, vm: str = "v", **extra):
    args = {"kvmsnap_restore_vms": [lab.name(vm)], "kvmsnap_restore_snapshot": SNAP, "kvmsnap_restore_force": True,
            "kvmsnap_shutdown_timeout": 2, **extra}
    return lab.run("restore", lab.inv, args)


def prerestore(lab) -> list[str]:
    return [s for s in lab.snapshots("s1", "vol_ds1") if "prerestore" in s]


def untouched(lab, safety_before: list[str]) -> None:
    """Nothing was touched: v runs as before (same domain id), its disks hold the live data, no new safety snapshot."""
    dom = lab.conn.lookupByName(lab.name("v"))
    assert dom.state()[0] == RUNNING and dom.ID() == lab.dom_id
    assert {p: sha(p) for p in disks(lab)} == lab.before
    assert prerestore(lab) == safety_before


# ---- the lock ------------------------------------------------------------------------------------------------


def test_restore_refuses_while_a_backup_holds_the_vms_lock(live):
    lab = live
    before = prerestore(lab)
    backup_run = "20261130T110000Z-0badcafe"  # as vm_quiesce state=locked takes it for a backup run
    _lock.acquire(str(lab.state_dir), [{"uuid": lab.uuid, "name": lab.name("v")}], backup_run, time.time() + 600,
                  hold=True)
    try:
        proc = restore(lab)
        assert proc.returncode != 0, run_output(proc)
        assert "is locked by run %s" % backup_run in proc.stdout, run_output(proc)
        untouched(lab, before)
    finally:
        _lock.release(str(lab.state_dir), [lab.uuid], backup_run)


# ---- order, XML/NVRAM aside ------------------------------------------------------------------------------------


def test_stop_then_safety_snapshot_then_overwrite(live):
    lab = live
    sim = lab.sims["s1"]
    seq = max([c["seq"] for c in sim.admin("GET", "calls")["calls"]] or [0])
    stopped_at = []

    def watch():
        dom = lab.conn.lookupByName(lab.name("v"))
        end = time.time() + 120
        while time.time() < end and not stopped_at:
            if dom.state()[0] != RUNNING:
                stopped_at.append(time.time())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    proc = restore(lab)
    watcher.join()
    assert proc.returncode == 0, run_output(proc)
    calls = sim.admin("GET", "calls?since=%d" % seq)["calls"]
    snap_posts = [c for c in calls if c["method"] == "POST" and c["path"].endswith("/snapshots")]
    patches = [c for c in calls if c["method"] == "PATCH" and c["path"].count("/") == 4]
    assert snap_posts and patches and stopped_at, calls
    assert stopped_at[0] < snap_posts[0]["start"] < patches[0]["start"], (stopped_at, snap_posts, patches)
    for path in disks(lab):
        assert sha(path) == sha(in_snapshot(lab, path))
    safety = proc.report["safety_snapshot"]
    # the safety snapshot holds the disks as the shutdown left them (the live data)
    for path in disks(lab):
        assert sha(in_snapshot(lab, path, safety)) == lab.before[path]
    aside = [a for a in proc.report["aside"] if a["vm"] == lab.name("v")]
    assert len(aside) == 1 and os.stat(aside[0]["xml"]).st_mode & 0o777 == 0o600
    assert lab.uuid in Path(aside[0]["xml"]).read_text()
    assert lab.conn.lookupByName(lab.name("v")).state()[0] == RUNNING


def test_a_changed_nvram_is_kept_aside(lab):
    backed_up = lab.nvram.read_bytes()
    lab.nvram.write_bytes(b"NVRAM-CHANGED-SINCE".ljust(4096, b"\0"))
    proc = restore(lab, vm="n")
    assert proc.returncode == 0, run_output(proc)
    assert lab.nvram.read_bytes() == backed_up
    aside = [a for a in proc.report["aside"] if a["vm"] == lab.name("n")]
    assert len(aside) == 1 and aside[0]["nvram"], proc.report
    kept = Path(aside[0]["nvram"])
    assert kept.read_bytes().startswith(b"NVRAM-CHANGED-SINCE")
    assert os.stat(kept).st_mode & 0o777 == 0o600 and os.stat(kept.parent).st_mode & 0o777 == 0o700
    assert str(kept.parent).startswith(str(lab.state_dir / "restore"))


# ---- partial failure, interruption -----------------------------------------------------------------------------


def test_second_disk_fails_first_rolled_back_vm_running_again(live):
    lab = live
    sim = lab.sims["s1"]
    sim.admin("POST", "faults", {"action": "error", "method": "PATCH", "path": RESTORE_PATCH, "skip": 1,
                                 "count": 1, "status": 400, "code": "917505",
                                 "message": "simulated single-file restore failure"})
    proc = restore(lab)
    assert proc.returncode != 0, run_output(proc)
    rep = proc.report
    assert rep, run_output(proc)
    files = rep["volumes"][0]["files"]
    assert [f["result"] for f in files] == ["rolled_back", "failed"], files
    assert "simulated single-file restore failure" in files[1]["error"]
    assert rep["rolled_back"] is True and rep["safety_snapshot"] and rep["journal"] is None
    assert "were rolled back from it and the VMs put back as they were" in proc.stdout, run_output(proc)
    # the VM is back as it was: running, its disks hold the live data again
    dom = lab.conn.lookupByName(lab.name("v"))
    assert dom.state()[0] == RUNNING
    assert {p: sha(p) for p in disks(lab)} == lab.before
    assert rep["vms"][0]["state_after"] == "running" and rep["vms"][0]["state_before"] == "running"
    assert not list((lab.state_dir / "restore").glob("*.json"))


def test_kill_9_after_the_disks_then_a_backup_refuses_and_a_rerun_completes(live):
    lab = live
    jdir = lab.state_dir / "restore"
    args = {"kvmsnap_restore_vms": [lab.name("v")], "kvmsnap_restore_snapshot": SNAP, "kvmsnap_restore_force": True,
            "kvmsnap_shutdown_timeout": 2}
    cmd = [PLAYBOOK, "-i", str(lab.inv), "kvmsnap.core.restore", "-e", json.dumps(args)]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    stage = None
    end = time.time() + 240
    while time.time() < end and proc.poll() is None:
        for j in jdir.glob("*.json") if jdir.exists() else []:
            try:
                stage = json.loads(j.read_text()).get("stage")
            except ValueError:
                continue
        if stage == "define":  # the disks are restored, the VMs not defined/started yet
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert stage == "define", "the restore ended before the disks were restored (stage %s)" % stage
    assert lab.conn.lookupByName(lab.name("v")).state()[0] == SHUTOFF
    for path in disks(lab):
        assert sha(path) == sha(in_snapshot(lab, path))
    journal = json.loads(next(jdir.glob("*.json")).read_text())
    holder = _lock.read_lock(_lock.lock_path(str(lab.state_dir), lab.uuid))
    assert holder and holder["run_id"] == journal["run_id"]
    # the killed restore's lock still holds: a backup refuses, naming it
    backup = lab.run("backup", lab.inv, {"kvmsnap_snapshot_name": "kvmsnap-daily_exec_refused"})
    assert backup.returncode != 0, run_output(backup)
    assert "is locked by run %s" % journal["run_id"] in backup.stdout, run_output(backup)
    assert "kvmsnap-daily_exec_refused" not in lab.snapshots("s1", "vol_ds1")
    # the rerun completes the journaled plan: same run, same safety snapshot, the VM that was running is started
    safety = prerestore(lab)
    rerun = restore(lab)
    assert rerun.returncode == 0, run_output(rerun)
    assert rerun.report["run_id"] == journal["run_id"]
    assert rerun.report["safety_snapshot"] == journal["safety_snapshot"]
    # no second safety snapshot (the retention, kvmsnap_prerestore_keep, may have pruned the oldest ones)
    assert set(prerestore(lab)) <= set(safety) and journal["safety_snapshot"] in prerestore(lab)
    assert rerun.report["vms"][0]["state_before"] == "running" and rerun.report["vms"][0]["state_after"] == "running"
    assert lab.conn.lookupByName(lab.name("v")).state()[0] == RUNNING
    assert not list(jdir.glob("*.json"))
    assert _lock.read_lock(_lock.lock_path(str(lab.state_dir), lab.uuid)) is None


# ---- the report names what exists ------------------------------------------------------------------------------


def test_a_failed_safety_snapshot_is_not_named_and_nothing_is_overwritten(live):
    lab = live
    before = prerestore(lab)
    lab.sims["s1"].admin("POST", "faults", {"action": "error", "method": "POST",
                                            "path": "/api/storage/volumes/*/snapshots", "count": 5,
                                            "status": 500, "code": "65552", "message": "snapshot RPC failure"})
    proc = restore(lab)
    assert proc.returncode != 0, run_output(proc)
    assert proc.report["safety_snapshot"] is None
    assert "The state before the restore is in snapshot" not in proc.stdout, run_output(proc)
    assert "No safety snapshot was taken" in proc.stdout
    assert {p: sha(p) for p in disks(lab)} == lab.before  # nothing overwritten
    assert prerestore(lab) == before
    assert lab.conn.lookupByName(lab.name("v")).state()[0] == RUNNING  # put back as it was
