"""vm_backup's overlay fence on the cases a user meets, on the lab libvirtd and the ONTAP simulator.

Disk kinds (minimal guests, ``fence: auto``, then ``fence: overlay``): a shareable writable disk and a block disk
(a loop device) send the VM to the direct fence, with the disk named in ``fence_reason`` and in the pre-flight
refusal of ``fence: overlay``; a read-only disk beside a writable one is skipped and the VM overlaid; two VMs whose
qcow2 images share one backing image (a golden image) are overlaid on their tops, the shared image untouched.

A real guest writing an fsync'ed numbered line every 50 ms, its data disk a qcow2 image over a raw backing image
(a backing chain), on the datastore: ``fence: overlay`` in freeze mode gives a snapshot whose copy of the disk (read
from the array snapshot, not the live image) passes ``e2fsck -fn`` and holds every line written before the freeze
and none written after the thaw; ``fence: auto`` overlays it on top of its chain, commits the guest's writes of the
run into the top image and leaves the chain as it was. After every run the VM is not left in a state that blocks its
migration or shutdown: its definitions name no overlay, no block job runs; the real guest is shut down and started
again from its committed image.

The disk kinds that already have a test elsewhere: a running block job (test_backup_overlay_system).
"""

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
from helpers.vm_utils import wait_for
from test_backup_overlay_system import datastore, overlay_files
from test_vm_backup_system import backup_args

from ansible_collections.kvmsnap.core.plugins.module_utils._domain_xml import parse_domain_xml
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_rules import is_overlay_path

pytestmark = [pytest.mark.needs_libvirtd]
RUNNING = 1
XML_INACTIVE = 2  # VIR_DOMAIN_XML_INACTIVE


def chains(dom, flags=0):
    """{target: [source, backing, ...]} of every disk of DOM (live XML, or the persistent one)."""
    return {d["target"]: [d["path"]] + [b["path"] for b in d["backing_chain"]]
            for d in parse_domain_xml(dom.XMLDesc(flags))["disks"]}


def assert_left_clean(dom):
    """The VM runs, names no overlay (live or persistent definition) and has no block job: nothing blocks its
    migration or shutdown."""
    assert dom.state()[0] == RUNNING
    for flags in (0, XML_INACTIVE):
        named = [p for chain in chains(dom, flags).values() for p in chain if p]
        assert not any(is_overlay_path(p) for p in named), (flags, named)
    for target in chains(dom):
        assert not dom.blockJobInfo(target, 0), target


def sha256(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def vm_entry(res, dom):
    return next(v for v in res["vms"] if v["uuid"] == dom.UUIDString())


# ---------------------------------------------------------------------------------------------
# disk kinds, minimal guests


@pytest.fixture
def loop_device(ontap_sim):
    """A loop device over an 8 MiB file in the datastore's volume: a block disk (what a LUN is to the host).
    Yields (device, the file's path inside the volume, for vm_mapping)."""
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root and losetup for a loop device")
    vol, _ds = datastore(ontap_sim)
    lun = "kind-lun-%s.img" % uuid.uuid4().hex[:6]
    backing = vol / lun
    with open(backing, "wb") as fh:
        fh.truncate(8 << 20)
    dev = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        yield dev, "/vol/vol_ds1/" + lun
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
        backing.unlink()


def second_disk_xml(kind, wdir, loop_device=None):
    """The XML of disk vdb of KIND (shareable, readonly, block), its image made in WDIR."""
    if kind == "block":
        return ("<disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='%s'/>"
                "<target dev='vdb' bus='virtio'/></disk>" % loop_device)
    os.makedirs(wdir, exist_ok=True)
    image = os.path.join(wdir, "vdb-%s-%s.img" % (kind, uuid.uuid4().hex[:6]))
    with open(image, "wb") as fh:
        fh.truncate(4 << 20)
    extra = {"shareable": "<shareable/>", "readonly": "<readonly/>"}[kind]
    cache = " cache='none'" if kind == "shareable" else ""
    return ("<disk type='file' device='disk'><driver name='qemu' type='raw'%s/><source file='%s'/>"
            "<target dev='vdb' bus='virtio'/>%s</disk>" % (cache, image, extra))


def two_disk_minimal_guest(conn, wdir, disk_xml):
    """A minimal guest (boot sector on hda, file) with DISK_XML as its second disk; defined and started."""
    name = "%sovk%s" % (domain.run_prefix(), uuid.uuid4().hex[:6])
    os.makedirs(wdir, exist_ok=True)
    boot = domain.make_boot_sector(os.path.join(wdir, name + ".img"))
    xml = domain.minimal_guest_xml(name, boot).replace("<controller type='usb'", disk_xml + "<controller type='usb'")
    dom = conn.defineXML(xml)
    try:
        dom.create()
    except Exception:
        dom.undefine()
        raise
    return dom


# kind: (fence under auto, what fence_reason says, fence=overlay refuses it)
KINDS = {
    "shareable": ("direct", "shareable", True),
    "block": ("direct", "block device", True),
    "readonly": ("overlay", "read-only disk: nothing changes", False),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_disk_kind_through_vm_backup(kind, ontap_sim, libvirt_system, tmp_path, module_runner, request):
    fence, reason, refused = KINDS[kind]
    vol, ds = datastore(ontap_sim)
    wdir = vol / ("kind-" + kind)
    dev, lun = request.getfixturevalue("loop_device") if kind == "block" else (None, None)
    dom = two_disk_minimal_guest(libvirt_system, str(wdir), second_disk_xml(kind, str(wdir), dev))
    try:
        before = chains(dom)
        persistent_before = dom.XMLDesc(XML_INACTIVE)
        args = backup_args(ontap_sim, str(tmp_path / "state"), [dom.name()], fence="auto", volumes=None,
                           datastores=ds)
        if lun:  # a block disk is on no datastore: the VM is mapped to its LUN's volume, as a SAN user does
            args["vm_mapping"] = "%s:%s:%s;" % (dom.name(), ontap_sim.host, lun)
        res = module_runner("vm_backup", args, timeout=120)
        assert not res.failed, res
        assert res["trust"] == "good", res
        vm = vm_entry(res, dom)
        assert vm["fence"] == fence, vm
        # the reason names the disk and why (also a skipped one: the report says what was not overlaid)
        assert "disk vdb (%s)" % before["vdb"][0] in vm["fence_reason"] and reason in vm["fence_reason"], vm
        assert "hda" not in vm["fence_reason"], vm
        if fence == "overlay":
            # the read-only disk is skipped: only hda got (and lost again) an overlay
            assert [(o["target"], o["result"], o["removed"]) for o in vm["overlays"]] == [("hda", "committed", True)]
            assert vm["action"] == "suspended" and vm["pause_ms"] > 0, vm
        else:
            assert "overlays" not in vm and vm["action"] == "suspended", vm
        assert chains(dom) == before and dom.XMLDesc(XML_INACTIVE) == persistent_before
        assert_left_clean(dom)
        assert overlay_files(wdir) == []
        # the message counts every VM quiesced, by either fence
        assert "taken with 1 VM(s) quiesced (mode suspend%s)" % (
            ", 1 under the overlay fence" if fence == "overlay" else "") in res["msg"], res["msg"]
        sys.stderr.write("\n%s: fence=auto gave %s (%s), pause %.1f ms\n"
                         % (kind, vm["fence"], vm["fence_reason"], vm["pause_ms"]))

        args = dict(args, fence="overlay", name=args["name"] + "o")
        res = module_runner("vm_backup", args, timeout=120)
        if refused:
            assert res.failed, res
            assert "cannot take the overlay fence" in res["msg"] and "nothing was quiesced" in res["msg"], res
            assert "disk vdb (%s)" % before["vdb"][0] in res["msg"] and reason in res["msg"], res
            assert not (vol / ".snapshot" / args["name"]).exists()  # refused before the snapshot
        else:
            assert not res.failed and res["trust"] == "good", res
            vm = vm_entry(res, dom)
            assert vm["fence"] == "overlay" and [o["target"] for o in vm["overlays"]] == ["hda"], vm
            assert reason in vm["fence_reason"], vm
        assert chains(dom) == before and dom.XMLDesc(XML_INACTIVE) == persistent_before
        assert_left_clean(dom)
        if kind == "readonly":  # shut off and started again: boots from its own images
            dom.destroy()
            assert all(not is_overlay_path(c[0]) for c in chains(dom, XML_INACTIVE).values())
            dom.create()
            assert chains(dom) == before and dom.state()[0] == RUNNING
    finally:
        domain.destroy_and_undefine(dom)


def test_two_vms_on_one_backing_image_overlaid_on_their_tops(ontap_sim, libvirt_system, tmp_path, module_runner):
    """A golden image shared by two VMs (each boots a qcow2 top image over the same raw base): fence=auto overlays
    both on their tops in one run; afterwards both chains are as before and the shared base unchanged."""
    vol, ds = datastore(ontap_sim)
    wdir = vol / ("golden-%s" % uuid.uuid4().hex[:6])
    wdir.mkdir()
    golden = domain.make_boot_sector(str(wdir / "golden.img"), size=1 << 20)
    golden_sum = sha256(golden)
    doms = []
    try:
        for i in range(2):
            name = "%sovg%d%s" % (domain.run_prefix(), i, uuid.uuid4().hex[:6])
            top = str(wdir / (name + ".qcow2"))
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", golden, top], check=True)
            xml = domain.minimal_guest_xml(name, top).replace('type="raw"/>', 'type="qcow2"/>')
            assert 'type="qcow2"' in xml
            dom = libvirt_system.defineXML(xml)
            doms.append(dom)
            dom.create()
        before = {d.name(): chains(d) for d in doms}
        assert all(c["hda"][1] == golden for c in before.values()), before
        args = backup_args(ontap_sim, str(tmp_path / "state"), [d.name() for d in doms], fence="auto", volumes=None,
                           datastores=ds)
        res = module_runner("vm_backup", args, timeout=120)
        assert not res.failed and res["trust"] == "good", res
        for d in doms:
            vm = vm_entry(res, d)
            assert vm["fence"] == "overlay" and "backing chain of 1 image(s): overlaid on top" in vm["fence_reason"], vm
            assert [(o["target"], o["result"], o["removed"]) for o in vm["overlays"]] == [("hda", "committed", True)]
            assert chains(d) == before[d.name()]
            assert_left_clean(d)
        assert "taken with 2 VM(s) quiesced (mode suspend, 2 under the overlay fence)" in res["msg"], res["msg"]
        assert sha256(golden) == golden_sum and overlay_files(wdir) == []
    finally:
        for d in doms:
            domain.destroy_and_undefine(d)


# ---------------------------------------------------------------------------------------------
# one real guest, writing under load, its data disk a qcow2 image over a raw backing image


SNAPSHOT_S = 2.0  # the array's snapshot call takes this long: the guest writes ~40 lines on its overlay meanwhile


@pytest.fixture(scope="module")
def chain_guest(ontap_sim, libvirt_system, guest_assets):
    """The file's real guest (booted once, TCG): vda = top.qcow2 over base.img (raw ext4; relative backing name,
    so the snapshot's top image reads the snapshot's base), both in a directory of the datastore volume vol_ds1.
    Its writer appends '<n> <epoch>' to /data/log.txt, fsync'ed, every 50 ms."""
    vol, ds = datastore(ontap_sim)
    wdir = vol / ("rg-%s" % uuid.uuid4().hex[:6])
    wdir.mkdir()
    base, top = str(wdir / "base.img"), str(wdir / "top.qcow2")
    disks.make_data_disk(base, 32)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "base.img", top], check=True,
                   cwd=str(wdir))
    name = "%sovc%s" % (domain.run_prefix(), uuid.uuid4().hex[:6])
    started = time.monotonic()
    dom = domain.define_guest(libvirt_system, name, top, guest_assets)
    try:
        domain.wait_agent_ready(dom, timeout=180)
        sys.stderr.write("\nreal guest %s booted in %.1f s\n" % (name, time.monotonic() - started))
        yield {"dom": dom, "name": name, "vol": vol, "ds": ds, "wdir": wdir, "base": base, "top": top}
    finally:
        domain.destroy_and_undefine(dom)


def log_lines(data):
    """{n: epoch second (guest clock)} of the writer's complete lines."""
    out = {}
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    for line in text.split("\n")[:-1]:
        parts = line.split(" ")
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            out[int(parts[0])] = int(parts[1])
    return out


def live_lines(dom):
    return log_lines(domain.read_guest_file(dom, "/data/log.txt"))


def guest_clock_offset(dom):
    """(guest clock - host clock, uncertainty) in seconds, from the agent's guest-get-time."""
    h0 = time.time()
    g = dom.getTime()
    h1 = time.time()
    return g["seconds"] + g["nseconds"] / 1e9 - (h0 + h1) / 2, (h1 - h0) / 2 + 0.01


def snapshot_image(snapdir, top, tmp_path):
    """A raw copy of the VM's disk as the array snapshot holds it (its top image over its own base), the
    qcow2 check of that top image."""
    snap_top = snapdir / os.path.basename(top)
    info = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(snap_top)], capture_output=True, text=True,
                          check=True).stdout
    assert '"backing-filename": "base.img"' in info, info  # relative: the snapshot's own base
    check = subprocess.run(["qemu-img", "check", "-U", str(snap_top)], capture_output=True, text=True, check=False)
    copy = str(tmp_path / "snap-disk.img")
    subprocess.run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", str(snap_top), copy], check=True)
    return copy, check


@pytest.mark.needs_kvm_guests
@pytest.mark.slow
def test_freeze_overlay_snapshot_is_crash_consistent_under_load(chain_guest, ontap_sim, tmp_path, module_runner):
    """Read back from the array snapshot, the disk holds every line the guest had fsync'ed before the freeze.

    The rule (the guest's clock is read through its agent: offset to the host's, with its uncertainty U): the
    freeze began after t_q = overlay_at - (quiesce_ms + overlay_ms) (the report: overlay_at is when the overlay
    call returned, quiesce_ms + overlay_ms the time from the quiesce call to then). The writer is sequential
    (echo, fsync, sleep), so a line n+1 whose stamp s (whole guest seconds) satisfies s + 1 + U <= t_q + offset
    was started before the freeze, and line n was on disk before it: every such n must be in the snapshot. The
    thaw ended at t_r = t_q + pause_ms; a line stamped at or after t_r + offset + U was written after
    the thaw, into the overlay: none may be in the snapshot (the array took it SNAPSHOT_S later), and there must
    be such lines, or the test proves nothing. Besides: the snapshot's lines are 1..N without a gap, and the lines
    read from the guest before the run are all there."""
    g = chain_guest
    dom = g["dom"]
    assert wait_for(lambda: len(live_lines(dom)) >= 5, 60, step=0.5), "writer not running"
    chain_before = chains(dom)
    assert chain_before["vda"] == [g["top"], g["base"]], chain_before
    offset, unc = guest_clock_offset(dom)
    before = live_lines(dom)
    args = backup_args(ontap_sim, str(tmp_path / "state"), [g["name"]], fence="overlay", mode="freeze",
                       volumes=None, datastores=g["ds"])
    with ontap_sim.latency({"snapshot_create": SNAPSHOT_S}, scale=1):
        res = module_runner("vm_backup", args, timeout=180)
    assert not res.failed, res
    assert res["trust"] == "good" and not res.get("window_faults"), res
    vm = vm_entry(res, dom)
    assert (vm["fence"], vm["action"], vm["consistency"], vm["release_result"]) == (
        "overlay", "frozen", "filesystem", "thawed"), vm
    assert res["consistency"] == "filesystem", res
    assert [(o["target"], o["result"], o["removed"], o["error"]) for o in vm["overlays"]] == [
        ("vda", "committed", True, None)], vm
    ct = res["snapshots"][0]["create_time"]
    assert int(vm["overlay_at"]) <= ct <= vm["commit_started_at"] + 1, (vm, ct)
    assert chains(dom) == chain_before
    assert_left_clean(dom)
    assert overlay_files(g["wdir"]) == []

    offset2, unc2 = guest_clock_offset(dom)
    unc = max(unc, unc2) + abs(offset2 - offset)  # the guest's clock may drift against the host's meanwhile
    after = live_lines(dom)
    copy, check = snapshot_image(g["vol"] / ".snapshot" / args["name"] / g["wdir"].name, g["top"], tmp_path)
    # the top image's qcow2 metadata was flushed with its data: no corruption, no leaked cluster
    assert check.returncode == 0 and "No errors were found" in check.stdout, check.stdout + check.stderr
    rc, text = disks.fsck_disk(copy)
    assert rc == 0, text
    snap = disks.parse_writer_log(disks.read_disk_file(copy))
    assert snap and snap[0] == 1 and disks.writer_log_gaps(snap) == [], snap[-5:]
    held = set(snap)

    t_q = vm["overlay_at"] - (vm["quiesce_ms"] + vm["overlay_ms"]) / 1000.0
    t_r = t_q + vm["pause_ms"] / 1000.0  # the pause runs from the quiesce call to the end of the release
    must = [n for n in after if n + 1 in after and after[n + 1] + 1 + unc <= t_q + offset]
    must_not = [n for n in after if after[n] >= t_r + offset + unc]
    assert must and must_not, "no line before the freeze or after the thaw by the rule: the test proves nothing"
    sys.stderr.write("\nfreeze overlay under load: pause %.1f ms (quiesce %.1f); snapshot holds lines 1..%d; "
                     "before the freeze (rule) ..%d; after the thaw (rule) %d..; the guest was at %d after the run; "
                     "clock offset %+.3f s +- %.3f\n"
                     % (vm["pause_ms"], vm["quiesce_ms"], snap[-1], max(must), min(must_not), max(after), offset, unc))
    assert set(before) <= held, (sorted(before)[-3:], snap[-3:])
    assert set(must) <= held, (max(must), snap[-1])
    assert not held & set(must_not), (min(must_not), snap[-1])
    assert [after[n] for n in snap] == [log_lines(disks.read_disk_file(copy))[n] for n in snap]  # same lines


@pytest.mark.needs_kvm_guests
@pytest.mark.slow
def test_auto_overlays_a_backing_chain_on_top_and_commits_into_the_top(
        chain_guest, ontap_sim, tmp_path, module_runner):
    """fence=auto on a disk with a backing chain: overlaid on top; afterwards the chain is the same (same top, same
    backing image, the backing image unchanged), the guest's writes during the run are in the top image (read
    offline after a clean shutdown: the overlay file is gone and the base did not change, so they can be nowhere
    else), and the VM starts again from its chain and writes on."""
    g = chain_guest
    dom = g["dom"]
    assert wait_for(lambda: len(live_lines(dom)) >= 5, 60, step=0.5), "writer not running"
    chain_before = chains(dom)
    assert chain_before["vda"] == [g["top"], g["base"]], chain_before
    base_sum = sha256(g["base"])
    persistent_before = dom.XMLDesc(XML_INACTIVE)
    last_before = max(live_lines(dom))
    args = backup_args(ontap_sim, str(tmp_path / "state"), [g["name"]], fence="auto", volumes=None,
                       datastores=g["ds"])
    with ontap_sim.latency({"snapshot_create": SNAPSHOT_S / 2}, scale=1):
        res = module_runner("vm_backup", args, timeout=180)
    assert not res.failed and res["trust"] == "good", res
    vm = vm_entry(res, dom)
    assert vm["fence"] == "overlay" and vm["action"] == "suspended", vm
    assert "disk vda (%s): backing chain of 1 image(s): overlaid on top" % g["top"] in vm["fence_reason"], vm
    assert [(o["target"], o["result"], o["removed"]) for o in vm["overlays"]] == [("vda", "committed", True)], vm
    overlay = vm["overlays"][0]["overlay"]
    assert os.path.dirname(overlay) == str(g["wdir"]) and not os.path.exists(overlay)
    assert chains(dom) == chain_before  # the same top image over the same backing image
    assert dom.XMLDesc(XML_INACTIVE) == persistent_before  # the definition it boots from next is as it was
    assert_left_clean(dom)
    assert overlay_files(g["wdir"]) == []
    during = [n for n in live_lines(dom) if n > last_before]
    assert len(during) >= 10, during  # the guest wrote on its overlay during the run (SNAPSHOT_S / 2 at least)

    # shut off (clean, through the agent: the writer stops, /data is unmounted) and read the chain offline
    domain.shutdown_guest(dom, timeout=60)
    assert all(not is_overlay_path(p) for c in chains(dom, XML_INACTIVE).values() for p in c if p)
    assert sha256(g["base"]) == base_sum, "the backing image changed: the commit went below the top"
    copy = str(tmp_path / "top-offline.img")
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", g["top"], copy], check=True)
    rc, text = disks.fsck_disk(copy)
    assert rc == 0, text
    offline = disks.parse_writer_log(disks.read_disk_file(copy))
    assert disks.writer_log_gaps(offline) == [] and set(during) <= set(offline), (during[:3], offline[-3:])
    last = offline[-1]
    # started again: it boots from its chain, the writer continues its numbering after the last line on disk
    dom.create()
    domain.wait_agent_ready(dom, timeout=180)
    assert chains(dom) == chain_before
    assert wait_for(lambda: max(live_lines(dom)) > last + 2, 60, step=0.5), "the writer did not resume"
    numbers = sorted(live_lines(dom))
    assert disks.writer_log_gaps(numbers) == [] and numbers[0] == 1, numbers[-5:]
    sys.stderr.write("\nbacking chain, fence=auto: pause %.1f ms, %d lines written on the overlay committed into "
                     "the top image; restarted, writing on from %d\n" % (vm["pause_ms"], len(during), last + 1))
