"""The overlay fence's core on the lab libvirtd: one VM's overlay (suspend and freeze, pause measured), two disks
overlaid in one atomic snapshot, commit + pivot, a leftover of a dead run found and committed by the recovery (F24 (docs/dev/faults.md#f24)), a VM
with a block job sent to the direct fence, and the proof that the base image is on stable storage at the overlay
point (a real guest writing fsync'ed lines: the base copied while the VM runs on its overlay passes e2fsck -fn and
holds every line written before the freeze)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from guestlab import disks, domain
from helpers.guest_fixtures import SYSTEM_URI
from helpers.vm_utils import resume_all, wait_for

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal
from ansible_collections.kvmsnap.core.plugins.module_utils import _overlay as ovl
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_conn import SharedConnection
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_recovery import find_leftovers, recover
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_rules import is_overlay_path
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_run import commit_overlays, fence_overlays, plan_vms

pytestmark = [pytest.mark.needs_libvirtd]
RUNNING = 1


@pytest.fixture
def sc():
    conn = SharedConnection(SYSTEM_URI, retries=2)
    yield conn
    conn.close()


def new_run(tmp_path, doms, run_id=None):
    """A state dir and a fence journal for DOMS (what Fence.start_run writes, without locks and watchdog)."""
    sd = _journal.ensure_state_dir(str(tmp_path / "state"))
    run_id = run_id or _journal.new_run_id("ovltest")
    vms = [{"uuid": d.UUIDString(), "name": d.name(), "prior_state": "running"} for d in doms]
    _journal.write(sd, _journal.new_journal(run_id, "vm_backup", SYSTEM_URI, "suspend", 60, vms))
    return sd, run_id


def chain(dom, target, flags=0):
    """[source, backing, ...] of disk TARGET in DOM's live (or inactive) XML."""
    from ansible_collections.kvmsnap.core.plugins.module_utils._domain_xml import parse_domain_xml
    for disk in parse_domain_xml(dom.XMLDesc(flags))["disks"]:
        if disk["target"] == target:
            return [disk["path"]] + [b["path"] for b in disk["backing_chain"]]
    raise AssertionError("no disk %s" % target)


def two_disk_guest(conn, workdir):
    """A minimal guest (boot sector cli;hlt, raw hda) with a second qcow2 disk vdb; started."""
    name = "%sovl2d%s" % (domain.run_prefix(), uuid.uuid4().hex[:6])
    os.makedirs(workdir, exist_ok=True)
    boot = domain.make_boot_sector(os.path.join(workdir, name + ".img"))
    extra = os.path.join(workdir, name + "-b.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", extra, "16M"], check=True)
    xml = domain.minimal_guest_xml(name, boot).replace(
        "<controller type='usb'", "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/>"
        "<target dev='vdb' bus='virtio'/></disk><controller type='usb'" % extra)
    dom = conn.defineXML(xml)
    dom.create()
    return dom, boot, extra


def report(label, out):
    sys.stderr.write("\n%s: quiesce %.1f ms, overlay %.1f ms, release %.1f ms, pause %.1f ms\n"
                     % (label, out["quiesce_ms"], out["overlay_ms"], out["release_ms"], out["pause_ms"]))


@pytest.mark.parametrize("precreated", [False, True], ids=["libvirt-creates", "precreated"])
def test_suspend_overlay_then_commit_one_vm(minimal_guests, sc, tmp_path, precreated):
    dom = minimal_guests(1)[0]
    base = chain(dom, "hda")[0]
    sd, run_id = new_run(tmp_path, [dom])
    plans = plan_vms(sc, [dom.UUIDString()], run_id)
    assert plans[0]["fence"] == "overlay", plans
    overlay = plans[0]["overlays"][0]["overlay"]
    assert os.path.dirname(overlay) == os.path.dirname(base) and is_overlay_path(overlay)
    try:
        out = fence_overlays(sc, sd, run_id, plans, run_id, mode="suspend", precreated=precreated)[0]
        report("suspend overlay, 1 VM%s" % (", precreated" if precreated else ""), out)
        assert out["created"] and out["error"] is None, out
        assert out["action"] == "suspended" and out["release_result"] == "resumed"
        assert dom.state()[0] == RUNNING
        assert 0 < out["pause_ms"] < 2000
        assert chain(dom, "hda") == [overlay, base]
        assert chain(dom, "hda", ovl.XML_INACTIVE)[0] == overlay  # the persistent definition follows
        assert os.path.isfile(overlay)
        entry = _journal.read(sd, run_id)["vms"][0]["overlays"][0]
        assert (entry["state"], entry["overlay_at"]) == ("created", out["overlay_at"])
        assert time.time() - 60 < out["overlay_at"] <= time.time()
        done = commit_overlays(sc, sd, run_id, plans, [out])[0]["disks"][0]
        sys.stderr.write("commit+pivot: %.1f ms\n" % done["commit_ms"])
        assert (done["result"], done["error"], done["removed"], done["attempts"]) == ("committed", None, True, 1), done
        assert chain(dom, "hda") == [base] and chain(dom, "hda", ovl.XML_INACTIVE) == [base]
        assert not os.path.exists(overlay)
        assert dom.state()[0] == RUNNING
        journal = _journal.read(sd, run_id)
        entry = journal["vms"][0]["overlays"][0]
        assert entry["state"] == "committed" and not _journal.holds_overlays(journal)
        assert entry["overlay_at"] < entry["commit_started_at"] == done["started_at"]
    finally:
        resume_all([dom])


def test_two_disks_overlaid_atomically_and_committed(libvirt_system, sc, tmp_path):
    dom, boot, extra = two_disk_guest(libvirt_system, str(tmp_path / "two"))
    try:
        sd, run_id = new_run(tmp_path, [dom])
        plans = plan_vms(sc, [dom.UUIDString()], run_id)
        assert [o["target"] for o in plans[0]["overlays"]] == ["hda", "vdb"]
        out = fence_overlays(sc, sd, run_id, plans, run_id)[0]
        report("suspend overlay, 1 VM with 2 disks", out)
        assert out["created"], out
        assert chain(dom, "hda") == [plans[0]["overlays"][0]["overlay"], boot]
        assert chain(dom, "vdb") == [plans[0]["overlays"][1]["overlay"], extra]
        done = commit_overlays(sc, sd, run_id, plans, [out])[0]["disks"]
        assert [(d["target"], d["result"], d["removed"]) for d in done] == [("hda", "committed", True),
                                                                            ("vdb", "committed", True)]
        assert chain(dom, "hda") == [boot] and chain(dom, "vdb") == [extra]
    finally:
        domain.destroy_and_undefine(dom)


def test_overlay_is_atomic_a_failing_disk_leaves_both_on_their_images(libvirt_system, sc, tmp_path):
    dom, boot, extra = two_disk_guest(libvirt_system, str(tmp_path / "atomic"))
    try:
        sd, run_id = new_run(tmp_path, [dom])
        plans = plan_vms(sc, [dom.UUIDString()], run_id)
        second = plans[0]["overlays"][1]["overlay"]
        with open(second, "wb") as fh:  # libvirt refuses an existing overlay file without REUSE_EXT
            fh.write(b"not mine")
        out = fence_overlays(sc, sd, run_id, plans, run_id)[0]
        assert not out["created"] and "overlay of VM" in out["error"] and out["release_result"] == "resumed", out
        assert dom.state()[0] == RUNNING
        assert chain(dom, "hda") == [boot] and chain(dom, "vdb") == [extra]
        assert not os.path.exists(plans[0]["overlays"][0]["overlay"])
        with open(second, "rb") as fh:
            assert fh.read() == b"not mine"
        journal = _journal.read(sd, run_id)
        assert {o["state"] for o in journal["vms"][0]["overlays"]} == {"absent"}
        assert commit_overlays(sc, sd, run_id, plans, [out]) == []
    finally:
        domain.destroy_and_undefine(dom)


def test_leftover_of_a_dead_run_is_found_and_committed(minimal_guests, sc, tmp_path):
    doms = minimal_guests(2)
    bases = [chain(d, "hda")[0] for d in doms]
    sd, run_id = new_run(tmp_path, doms)
    plans = plan_vms(sc, [d.UUIDString() for d in doms], run_id)
    outs = fence_overlays(sc, sd, run_id, plans, run_id)
    assert all(o["created"] for o in outs), outs
    # the run "dies" before its commit: its module process is gone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _journal.update(sd, run_id, lambda j: j.update(owners=[{"pid": dead.pid, "start": 1, "role": "module"}]))
    # the second VM's journal record is lost: only its domain XML shows its overlay
    second = plans[1]["overlays"][0]
    _journal.update(sd, run_id, lambda j: j["vms"][1].pop("overlays"))
    uuids = [d.UUIDString() for d in doms]
    found = find_leftovers(sd, sc, vm_uuids=uuids)
    assert [(f["uuid"], f["target"], f["found_in"], f["live_run"], f["state"]) for f in found] == sorted(
        [(uuids[0], "hda", "journal+domain", False, "running"), (uuids[1], "hda", "domain", False, "running")])
    assert {f["base"] for f in found} == set(bases)
    dry = recover(sd, sc, check_mode=True, vm_uuids=uuids)
    assert {e["result"] for e in dry["leftovers"]} == {"would commit"}
    assert chain(doms[0], "hda")[0] == plans[0]["overlays"][0]["overlay"]
    res = recover(sd, sc, vm_uuids=uuids)
    assert {(e["result"], e["removed"], e["error"]) for e in res["leftovers"]} == {("committed", True, None)}, res
    for dom, base in zip(doms, bases):
        assert chain(dom, "hda") == [base] and dom.state()[0] == RUNNING
    assert not os.path.exists(second["overlay"]) and not os.path.exists(plans[0]["overlays"][0]["overlay"])
    journal = _journal.read(sd, run_id)
    assert journal["vms"][0]["overlays"][0]["state"] == "committed" and not _journal.holds_overlays(journal)
    assert find_leftovers(sd, sc, vm_uuids=uuids) == []


def test_leftover_of_a_live_run_is_left_to_it(minimal_guests, sc, tmp_path):
    dom = minimal_guests(1)[0]
    sd, run_id = new_run(tmp_path, [dom])  # its owner is this process: alive
    plans = plan_vms(sc, [dom.UUIDString()], run_id)
    outs = fence_overlays(sc, sd, run_id, plans, run_id)
    res = recover(sd, sc, vm_uuids=[dom.UUIDString()])
    assert [(e["result"], e["live_run"]) for e in res["leftovers"]] == [("left to its run", True)]
    assert is_overlay_path(chain(dom, "hda")[0])
    assert recover(sd, sc, exclude_run=run_id, vm_uuids=[dom.UUIDString()])["leftovers"] == []
    done = commit_overlays(sc, sd, run_id, plans, outs)[0]["disks"][0]
    assert done["result"] == "committed"


def test_vm_with_a_block_job_goes_to_direct(libvirt_system, minimal_guests, sc, tmp_path):
    libvirt = pytest.importorskip("libvirt")
    dom = minimal_guests(1)[0]
    dest = str(tmp_path / "minimal" / "copy-dest.img")
    dom.blockCopy("hda", "<disk type='file'><driver type='raw'/><source file='%s'/></disk>" % dest, None,
                  libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)
    try:
        assert wait_for(lambda: bool(dom.blockJobInfo("hda", 0)), 10)
        plans = plan_vms(sc, [dom.UUIDString()], "run-x")
        assert plans[0]["fence"] == "direct" and "copy block job" in plans[0]["reason"], plans
        assert plans[0]["overlays"] == []
    finally:
        dom.blockJobAbort("hda", 0)


@pytest.mark.needs_kvm_guests
@pytest.mark.slow
def test_freeze_overlay_base_image_is_on_stable_storage(real_guest, sc, tmp_path):
    """The flush at the overlay point: a copy of the base taken while the VM runs on its overlay is clean."""
    guest = real_guest(size_mib=32)
    base = guest.disk_path
    dom = guest.dom
    assert wait_for(lambda: len(guest.writer_numbers()) >= 5, 60, step=0.5), "writer not running"
    sd, run_id = new_run(tmp_path, [dom])
    plans = plan_vms(sc, [dom.UUIDString()], run_id)
    assert plans[0]["fence"] == "overlay", plans
    overlay = plans[0]["overlays"][0]["overlay"]
    before = guest.writer_numbers()  # every line here was fsync'ed before the freeze
    out = fence_overlays(sc, sd, run_id, plans, run_id, mode="freeze")[0]
    report("freeze overlay, real guest", out)
    try:
        assert out["created"] and out["action"] == "frozen" and out["release_result"] == "thawed", out
        assert out["consistency"] == "filesystem"
        assert chain(dom, "vda") == [overlay, base]
        # the guest writes on, into its overlay: the base does not change any more
        n_after = guest.writer_numbers()[-1]
        digest = hashlib.sha256(open(base, "rb").read()).hexdigest()
        copy = str(tmp_path / "base-copy.img")
        shutil.copyfile(base, copy)
        assert wait_for(lambda: guest.writer_numbers()[-1] >= n_after + 10, 30, step=0.5), "guest not writing"
        assert hashlib.sha256(open(base, "rb").read()).hexdigest() == digest, "base changed under its overlay"
        rc, text = disks.fsck_disk(copy)
        assert rc == 0, text
        numbers = disks.parse_writer_log(disks.read_disk_file(copy))
        assert numbers[: len(before)] == before and disks.writer_log_gaps(numbers) == [], (before[-3:], numbers[-3:])
        assert numbers[-1] < guest.writer_numbers()[-1]  # the later lines are in the overlay only
        sys.stderr.write("base copy holds lines 1..%d (before the freeze: ..%d)\n" % (numbers[-1], before[-1]))
    finally:
        done = commit_overlays(sc, sd, run_id, plans, [out])
    assert done[0]["disks"][0]["result"] == "committed", done
    assert chain(dom, "vda") == [base] and not os.path.exists(overlay)
    last = guest.writer_numbers()[-1]
    assert wait_for(lambda: guest.writer_numbers()[-1] > last, 20, step=0.5), "guest stopped writing after the pivot"


def test_failed_commit_is_retried_reported_and_recovered_later(minimal_guests, sc, tmp_path, monkeypatch):
    libvirt = pytest.importorskip("libvirt")
    monkeypatch.setattr(ovl, "COMMIT_POLL", 0.01)
    dom = minimal_guests(1)[0]
    base = chain(dom, "hda")[0]
    sd, run_id = new_run(tmp_path, [dom])
    plans = plan_vms(sc, [dom.UUIDString()], run_id)
    outs = fence_overlays(sc, sd, run_id, plans, run_id)
    overlay = plans[0]["overlays"][0]["overlay"]
    # another job on the disk (a copy of the overlay) makes every commit attempt fail
    dest = str(tmp_path / "minimal" / "busy-copy.qcow2")
    dom.blockCopy("hda", "<disk type='file'><driver type='qcow2'/><source file='%s'/></disk>" % dest, None,
                  libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB | libvirt.VIR_DOMAIN_BLOCK_COPY_SHALLOW)
    try:
        done = commit_overlays(sc, sd, run_id, plans, outs)[0]["disks"][0]
        assert done["result"] is None and done["attempts"] == ovl.COMMIT_ATTEMPTS and "commit of overlay" in done["error"]
        entry = _journal.read(sd, run_id)["vms"][0]["overlays"][0]
        assert (entry["state"], entry["attempts"]) == ("failed", ovl.COMMIT_ATTEMPTS) and entry["error"]
        assert chain(dom, "hda")[0] == overlay and os.path.exists(overlay)  # nothing lost: still on its overlay
    finally:
        dom.blockJobAbort("hda", 0)
    _journal.update(sd, run_id, lambda j: j.update(owners=[]))  # the run is over
    res = recover(sd, sc, vm_uuids=[dom.UUIDString()])
    assert [(e["result"], e["journal_state"]) for e in res["leftovers"]] == [("committed", "failed")], res
    assert chain(dom, "hda") == [base] and not os.path.exists(overlay)
    entry = _journal.read(sd, run_id)["vms"][0]["overlays"][0]
    assert (entry["state"], entry["attempts"]) == ("committed", ovl.COMMIT_ATTEMPTS + 1)


def test_watchdog_commits_the_overlays_when_the_module_dies(minimal_guests, sc, tmp_path):
    from ansible_collections.kvmsnap.core.plugins.module_utils import _watchdog
    dom = minimal_guests(1)[0]
    base = chain(dom, "hda")[0]
    # the module is a child process that lives until told to exit: it owns the run
    module = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    sd, run_id = new_run(tmp_path, [dom])
    _journal.update(sd, run_id, lambda j: j.update(owners=[_journal.owner(module.pid)]))
    plans = plan_vms(sc, [dom.UUIDString()], run_id)
    outs = fence_overlays(sc, sd, run_id, plans, run_id)
    assert outs[0]["created"], outs
    _journal.update(sd, run_id, lambda j: _journal.mark_final(j, "released", "module"))  # released, not committed
    watchdog = subprocess.Popen([sys.executable, _watchdog.install(sd), _journal.journal_path(sd, run_id)])
    try:
        time.sleep(1.0)
        assert watchdog.poll() is None, "the watchdog left while the run's overlays are pending"
        assert is_overlay_path(chain(dom, "hda")[0])  # the live module's business
        module.communicate(b"", timeout=10)  # the module dies without committing
        assert watchdog.wait(timeout=60) == 0
        assert chain(dom, "hda") == [base] and not os.path.exists(plans[0]["overlays"][0]["overlay"])
        assert not _journal.holds_overlays(_journal.read(sd, run_id))
        log = open(os.path.join(sd, "watchdog.log")).read()
        assert "committing the overlays of run %s" % run_id in log and ": committed" in log, log
    finally:
        for proc in (module, watchdog):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("precreated", [False, True], ids=["libvirt-creates", "precreated"])
def test_four_vms_overlaid_in_parallel(minimal_guests, sc, tmp_path, precreated):
    doms = minimal_guests(4)
    sd, run_id = new_run(tmp_path, doms)
    plans = plan_vms(sc, [d.UUIDString() for d in doms], run_id)
    try:
        outs = fence_overlays(sc, sd, run_id, plans, run_id, precreated=precreated)
        assert all(o["created"] and o["release_result"] == "resumed" for o in outs), outs
        pauses = sorted(o["pause_ms"] for o in outs)
        sys.stderr.write("\nsuspend overlay, 4 VMs in parallel%s: pauses %s ms\n"
                         % (", precreated" if precreated else "", ", ".join("%.1f" % p for p in pauses)))
        assert pauses[-1] < 2000
        done = commit_overlays(sc, sd, run_id, plans, outs)
        assert [d["disks"][0]["result"] for d in done] == ["committed"] * 4
        assert not _journal.holds_overlays(_journal.read(sd, run_id))
    finally:
        resume_all(doms)
