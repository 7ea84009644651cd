"""kvmsnap.core.verify through ansible-playbook: boot throwaway copies of real guests from a backup snapshot.

Two real lab guests (kernel + initramfs, qemu-guest-agent, ext4 data disk at /data) whose data disks live in the
ONTAP simulator's volume: `good`, and `zeroed`, whose data disk is all zeros (a disk zeroed before the backup: the
guest boots, its agent answers, but /data is not mounted). One backup, then:

1. verify of both (one copy at a time): `good` passes, `zeroed` fails its check with the reason in the report; the
   snapshot is not marked verified; no copy domain and no overlay is left; the originals still run, unchanged.
2. verify of `good` alone: it boots from the snapshot, its agent answers, the check's output is reported, the
   snapshot's ONTAP comment gets verified=<time>, a leftover of a killed run is removed; the snapshot images'
   checksums are the same before and after.
3. a newer backup, then a restore --check with kvmsnap_restore_snapshot=latest_verified: it takes the verified
   snapshot, not the newer one.

(Not the backup's own post-snapshot check of the manifests: that one is test_playbook_verify.py.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.playbook_lab import Lab, guestlab, run_output, sha

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.needs_kvm_guests, pytest.mark.slow]

SNAP = "kvmsnap-daily_vboot1"
CHECK = "grep ' /data ' /proc/mounts"


@pytest.fixture(scope="module")
def lab(libvirt_system, guest_assets, tmp_path_factory):
    base = tmp_path_factory.mktemp("vmverify")
    lab = Lab(base, libvirt_system)
    lab.prefix = "%svbt-" % guestlab.run_prefix()
    try:
        lab.start_sim("s1")
        vol = lab.vol("s1", "vol_ds1")
        good = vol / ("%sgood-data.img" % lab.prefix)
        zeroed = vol / ("%szeroed-data.img" % lab.prefix)
        guestlab.make_data_disk(str(good), 32)
        with open(zeroed, "wb") as fh:
            fh.truncate(32 * 1024 * 1024)
        for key, disk in (("good", good), ("zeroed", zeroed)):
            lab.doms[key] = guestlab.define_guest(libvirt_system, lab.name(key), str(disk), guest_assets)
        for key in ("good", "zeroed"):
            guestlab.wait_agent_ready(lab.doms[key], timeout=180)
        lab.disks = {"good": good, "zeroed": zeroed}
        lab.work = base / "verify-work"
        lab.inv = lab.inventory(
            {"kvm1": {"kvmsnap_vms": [lab.name("good"), lab.name("zeroed")]}}, {"c1": lab.controller("s1")},
            kvmsnap_datastores=[lab.datastore("s1", "vol_ds1")],
            kvmsnap_restore_boot_dirs=[os.path.dirname(guest_assets.kernel)],
            kvmsnap_verify_dir=str(lab.work), kvmsnap_verify_timeout=240, kvmsnap_verify_command=CHECK)
        proc = lab.run("backup", lab.inv, {"kvmsnap_snapshot_name": SNAP})
        assert proc.returncode == 0, run_output(proc)
        lab.snapdir = vol / ".snapshot" / SNAP
        yield lab
    finally:
        lab.close()


def _copies(lab: Lab) -> list[str]:
    return [d.name() for d in lab.conn.listAllDomains(0) if d.name().startswith("kvmsnap-verify-")]


def _originals(lab: Lab) -> dict:
    return {k: (d.UUIDString(), d.ID(), d.state()[0]) for k, d in lab.doms.items()}


def test_a_zeroed_disk_fails_the_verify_and_nothing_is_marked(lab):
    before = _originals(lab)
    images = {k: sha(lab.snapdir / p.name) for k, p in lab.disks.items()}
    proc = lab.run("verify", lab.inv, {"kvmsnap_verify_parallel": 1})
    assert proc.returncode != 0, run_output(proc)
    rep = proc.report
    assert rep and rep["status"] == "failed" and rep["verified"] is False and rep["marked_verified"] is False
    by = {v["name"]: v for v in rep["vms"]}
    good, bad = by[lab.name("good")], by[lab.name("zeroed")]
    assert good["verified"] and good["booted"] and good["check"]["rc"] == 0, good
    assert bad["booted"] is True and bad["verified"] is False, bad  # the agent answered; the check did not pass
    assert bad["check"]["rc"] != 0 and "the check command exited with" in bad["reason"], bad
    assert [n["vm"] for n in rep["not_verified"]] == [lab.name("zeroed")]
    assert rep["parallel"]["kvm1"]["chosen"] == 1
    assert "FAILED for snapshot %s" % SNAP in proc.stdout and lab.name("zeroed") in proc.stdout
    assert "NOT marked verified" in proc.stdout
    # clean-up also on failure; the originals and the snapshot untouched
    assert _copies(lab) == []
    assert [p.name for p in lab.work.iterdir() if p.name.startswith("kvmsnap-verify-")] == []
    assert _originals(lab) == before
    assert {k: sha(lab.snapdir / p.name) for k, p in lab.disks.items()} == images


def test_verify_boots_a_copy_from_the_snapshot_and_marks_it(lab):
    before = _originals(lab)
    image = lab.snapdir / lab.disks["good"].name
    digest = sha(image)
    leftover = lab.work / "kvmsnap-verify-deadbeef-killed"  # what a killed run left: removed by the next run
    leftover.mkdir(parents=True)
    (leftover / "vda.qcow2").write_bytes(b"x")
    proc = lab.run("verify", lab.inv, {"kvmsnap_verify_vms": [lab.name("good")]})
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    assert rep["status"] == "ok" and rep["verified"] is True and rep["snapshot"] == SNAP
    [vm] = rep["vms"]
    assert vm["name"] == lab.name("good") and vm["booted"] and vm["verified"]
    assert vm["copy"].startswith("kvmsnap-verify-") and vm["copy"] != vm["name"]
    assert 0 < vm["agent_seconds"] <= 240
    assert vm["check"]["rc"] == 0 and " /data ext4 " in vm["check"]["stdout"], vm["check"]
    assert [d["backing"] for d in vm["disks"]] == [str(image)]
    assert "<console> left out: the serial port below is the console" in vm["notes"]
    assert rep["marked_verified"] is True
    assert len(rep["comments"]) == 1 and "state=good" in rep["comments"][0] and " verified=" in rep["comments"][0]
    assert rep["cleaned"]["kvm1"] == ["directory %s" % leftover]
    assert not leftover.exists()
    assert "booted as kvmsnap-verify-" in proc.stdout and "marked verified" in proc.stdout
    # nothing left, nothing touched
    assert _copies(lab) == []
    assert [p.name for p in lab.work.iterdir() if p.name.startswith("kvmsnap-verify-")] == []
    assert _originals(lab) == before
    assert sha(image) == digest
    assert Path(lab.disks["good"]).exists()


def test_restore_latest_verified_takes_the_verified_backup_not_a_newer_one(lab):
    proc = lab.run("backup", lab.inv, {"kvmsnap_snapshot_name": "kvmsnap-daily_vboot2"})
    assert proc.returncode == 0, run_output(proc)
    good = lab.name("good")
    proc = lab.run("restore", lab.inv, {"kvmsnap_restore_vms": [good], "kvmsnap_restore_snapshot": "latest_verified",
                                        "kvmsnap_restore_force": True}, check=True)
    assert proc.returncode == 0, run_output(proc)
    assert "would restore %s from %s" % (good, SNAP) in proc.stdout, run_output(proc)
    assert lab.doms["good"].state()[0] == 1  # check mode: nothing touched
