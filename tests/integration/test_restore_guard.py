"""A restore never touches a file another VM uses, on any inventory host; volume mode is honest; --check
validates as the real run does. Through ansible-playbook against the lab (docs/dev/faults.md#restore-other-users).

Host kvmA is the lab's libvirtd (tests/lab/labd) with minimal boot-sector guests whose disks live in the ONTAP
simulator's volumes; host kvmB is another libvirt (the test driver, ``test:///<node.xml>``: its own domains, its own
local catalog, no datastore configured - it merely runs VMs on the same NFS files, as a host outside the backup
scope does). One backup of kvmA, then each case sets the other VM up on kvmB and asks for a restore that the old code
ran ("OK"), overwriting the other VM's live disk:

- the VM was deleted on kvmA and now runs on kvmB on the same disk with a new UUID;
- the VM runs on kvmB with the same UUID (moved by hand to another libvirt);
- a running VM on kvmB has the disk as ``<shareable/>``, the VM to restore is shut off (no force needed);
- a shut-off VM on kvmB lists the disk of the VM to restore;
- volume mode with the override: a running VM on the volume that is not restored;
- check mode said "would restore" where the real run then failed in vm_restore (another VM of the same name).

Each is refused before anything is stopped: the disks and the snapshot list stay as they were, in --check too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers.playbook_lab import Lab, run_output, sha

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
import guestlab
from guestlab.testnode import domain_xml

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]

SNAP = "kvmsnap-daily_guard1"
OTHER_UUID = "6b1f0c3e-0000-4000-8000-00000000b0b0"


@pytest.fixture(scope="module")
def lab(libvirt_system, tmp_path_factory):
    base = tmp_path_factory.mktemp("guard")
    lab = Lab(base, libvirt_system)
    lab.prefix = "%sguard-" % guestlab.run_prefix()
    try:
        lab.start_sim("s1", ("vol_ds1", "vol_ds2"))
        lab.add_guests(("v", "s1", "vol_ds1"),   # the VM to restore
                       ("x", "s1", "vol_ds2"),   # restored in volume mode
                       ("y", "s1", "vol_ds2"))   # another VM on that volume, running
        lab.ds1 = lab.datastore("s1", "vol_ds1")
        lab.ds2 = lab.datastore("s1", "vol_ds2")
        lab.hosts = {"kvmA": {"kvmsnap_vms": [lab.name(k) for k in ("v", "x", "y")]}}
        lab.inv = lab.inventory(lab.hosts, {"c1": lab.controller("s1")}, kvmsnap_datastores=[lab.ds1, lab.ds2])
        proc = lab.run("backup", lab.inv, {"kvmsnap_snapshot_name": SNAP})
        assert proc.returncode == 0, run_output(proc)
        lab.v_xml = lab.conn.lookupByName(lab.name("v")).XMLDesc(0)
        lab.v_uuid = lab.conn.lookupByName(lab.name("v")).UUIDString()
        lab.v_disk = lab.disk("v", "s1", "vol_ds1")
        yield lab
    finally:
        lab.close()


def _v_state(lab, state: str) -> None:
    """kvmA's VM v: running, shutoff or absent (undefined; its disk stays)."""
    import libvirt
    try:
        dom = lab.conn.lookupByName(lab.name("v"))
    except libvirt.libvirtError:
        dom = None
    if state == "absent":
        if dom is not None:
            guestlab.destroy_and_undefine(dom)
        return
    if dom is None:
        dom = lab.conn.defineXML(lab.v_xml)
    if state == "running" and not dom.isActive():
        dom.create()
    if state == "shutoff" and dom.isActive():
        dom.destroy()


def _with_host_b(lab, name: str, domains: list[dict], shareable: bool = False):
    """An inventory of kvmA plus kvmB, another libvirt that runs DOMAINS (test driver) on the lab's files."""
    xml = "\n".join(domain_xml(d) for d in domains)
    if shareable:
        xml = xml.replace("</disk>", "<shareable/></disk>")
    node = lab.base / ("node-%s.xml" % name)
    node.write_text("<node>\n%s\n</node>\n" % xml)
    hosts = dict(lab.hosts)
    hosts["kvmB"] = {"kvmsnap_vms": [d["name"] for d in domains], "kvmsnap_libvirt_uri": "test://%s" % node,
                     "kvmsnap_datastores": [], "kvmsnap_state_dir": str(lab.base / ("state-" + name))}
    return lab.inventory(hosts, {"c1": lab.controller("s1")}, kvmsnap_datastores=[lab.ds1, lab.ds2])


def _refused_untouched(lab, inv, extra, *needles):
    """The restore (check mode and real) is refused in the pre-flight with NEEDLES; nothing changed."""
    before = sha(lab.v_disk)
    snaps = lab.snapshots("s1", "vol_ds1")
    for check in (True, False):
        proc = lab.run("restore", inv, extra, check=check)
        assert proc.returncode != 0, run_output(proc)
        assert "kvmsnap restore pre-flight" in proc.stdout, run_output(proc)
        for needle in needles:
            assert needle in proc.stdout, run_output(proc)
        assert sha(lab.v_disk) == before
        assert lab.snapshots("s1", "vol_ds1") == snaps  # no safety snapshot
    return proc


def test_vm_deleted_on_a_and_running_on_b_on_the_same_disk_new_uuid_is_refused(lab):
    _v_state(lab, "absent")
    inv = _with_host_b(lab, "moved", [{"name": lab.name("moved"), "uuid": OTHER_UUID, "state": "running",
                                       "disks": [{"path": str(lab.v_disk), "target": "vda", "format": "raw"}]}])
    _refused_untouched(lab, inv, {"kvmsnap_restore_vms": [lab.name("v")], "kvmsnap_restore_snapshot": SNAP,
                                  "kvmsnap_restore_force": True},
                       "is used by VM %s on kvmB (running)" % lab.name("moved"),
                       "kvmsnap_restore_force does not override this")
    assert lab.name("v") not in lab.conn.listDefinedDomains()  # not defined again either


def test_vm_running_on_another_libvirt_with_the_same_uuid_is_refused(lab):
    _v_state(lab, "absent")
    inv = _with_host_b(lab, "same", [{"name": lab.name("v"), "uuid": lab.v_uuid, "state": "running",
                                      "disks": [{"path": str(lab.v_disk), "target": "vda", "format": "raw"}]}])
    _refused_untouched(lab, inv, {"kvmsnap_restore_vms": [lab.name("v")], "kvmsnap_restore_snapshot": SNAP},
                       "VM %s (UUID %s) is also defined on kvmB" % (lab.name("v"), lab.v_uuid.lower()))


def test_shareable_disk_used_by_a_running_vm_is_refused(lab):
    _v_state(lab, "shutoff")  # no force needed: the old code rolled the disk back under the other VM
    inv = _with_host_b(lab, "share", [{"name": lab.name("sharer"), "uuid": OTHER_UUID, "state": "running",
                                       "disks": [{"path": str(lab.v_disk), "target": "vdb", "format": "raw"}]}],
                       shareable=True)
    _refused_untouched(lab, inv, {"kvmsnap_restore_vms": [lab.name("v")], "kvmsnap_restore_snapshot": SNAP},
                       "is used by VM %s on kvmB (running)" % lab.name("sharer"))


def test_shut_off_vm_listing_the_disk_is_refused_even_with_force(lab):
    _v_state(lab, "running")
    inv = _with_host_b(lab, "lister", [{"name": lab.name("lister"), "uuid": OTHER_UUID, "state": "shutoff",
                                        "disks": [{"path": str(lab.v_disk), "target": "vda", "format": "raw"}]}])
    _refused_untouched(lab, inv, {"kvmsnap_restore_vms": [lab.name("v")], "kvmsnap_restore_snapshot": SNAP,
                                  "kvmsnap_restore_force": True},
                       "is used by VM %s on kvmB (shutoff)" % lab.name("lister"))
    import libvirt
    assert lab.state("v") == libvirt.VIR_DOMAIN_RUNNING  # not stopped


def test_check_mode_fails_where_the_real_run_fails_another_vm_of_the_same_name(lab):
    # v deleted, a different VM (new UUID, its own disk) now carries its name: the old --check said "would
    # restore", the real run failed in vm_restore after the safety snapshot
    _v_state(lab, "absent")
    import libvirt
    impostor = lab.v_xml.replace(lab.v_uuid, OTHER_UUID).replace(str(lab.v_disk), str(lab.v_disk) + ".new")
    Path(str(lab.v_disk) + ".new").write_bytes(lab.v_disk.read_bytes())
    dom = lab.conn.defineXML(impostor)
    try:
        assert dom.UUIDString() == OTHER_UUID and dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
        _refused_untouched(lab, lab.inv, {"kvmsnap_restore_vms": [lab.name("v")], "kvmsnap_restore_snapshot": SNAP},
                           "a different VM named %r (UUID %s) exists" % (lab.name("v"), OTHER_UUID))
        assert lab.conn.lookupByName(lab.name("v")).UUIDString() == OTHER_UUID  # untouched
    finally:
        dom.undefine()


def test_volume_mode_never_rolls_back_a_running_vm_it_does_not_restore(lab):
    # vol_ds2: x (to restore, shut off) and y (running); override given: the old code rolled y back under it
    import libvirt
    lab.conn.lookupByName(lab.name("x")).destroy()
    y_disk = lab.disk("y", "s1", "vol_ds2")
    before = sha(y_disk)
    extra = {"kvmsnap_restore_vms": [lab.name("x")], "kvmsnap_restore_snapshot": SNAP,
             "kvmsnap_restore_mode": "volume", "kvmsnap_restore_volume_override": True}
    for check in (True, False):
        proc = lab.run("restore", lab.inv, extra, check=check)
        assert proc.returncode != 0, run_output(proc)
        assert "kvmsnap_restore_volume_override does not allow that" in proc.stdout, run_output(proc)
        assert "%s on kvmA (running, volume c1:svm1:vol_ds2)" % lab.name("y") in proc.stdout, run_output(proc)
        assert "no safety copy survives a volume restore" in proc.stdout, run_output(proc)
        assert sha(y_disk) == before and lab.state("y") == libvirt.VIR_DOMAIN_RUNNING
        assert lab.snapshots("s1", "vol_ds2") == [SNAP]


def test_volume_mode_sees_a_running_vm_of_another_host_elsewhere_on_the_volume(lab):
    # kvmB maps no datastore; its VM z runs on a file in another directory of vol_ds2: the whole volume counts
    z_file = lab.vol("s1", "vol_ds2") / "elsewhere" / "z.img"
    inv = _with_host_b(lab, "vol", [{"name": lab.name("z"), "uuid": OTHER_UUID, "state": "running",
                                     "disks": [{"path": str(z_file), "target": "vda", "format": "raw"}]}])
    extra = {"kvmsnap_restore_vms": [lab.name("x")], "kvmsnap_restore_snapshot": SNAP,
             "kvmsnap_restore_mode": "volume", "kvmsnap_restore_volume_override": True}
    proc = lab.run("restore", inv, extra, check=True)
    assert proc.returncode != 0, run_output(proc)
    assert "%s on kvmB (running, volume c1:svm1:vol_ds2)" % lab.name("z") in proc.stdout, run_output(proc)
    assert "VM on the volume: %s kvmB running c1:svm1:vol_ds2" % lab.name("z") in proc.stdout, run_output(proc)
    assert lab.snapshots("s1", "vol_ds2") == [SNAP]


def test_volume_mode_names_the_snapshots_it_deletes_and_that_no_safety_copy_survives(lab):
    # a later backup of y on vol_ds2, then y shut off: the volume restore of x to SNAP deletes that backup
    later = "kvmsnap-daily_guard2"
    proc = lab.run("backup", lab.inv, {"kvmsnap_snapshot_name": later, "kvmsnap_vms": [lab.name("y")]})
    assert proc.returncode == 0, run_output(proc)
    lab.conn.lookupByName(lab.name("y")).destroy()
    assert lab.snapshots("s1", "vol_ds2") == sorted([SNAP, later])
    extra = {"kvmsnap_restore_vms": [lab.name("x")], "kvmsnap_restore_snapshot": SNAP,
             "kvmsnap_restore_mode": "volume"}
    refused = lab.run("restore", lab.inv, extra)
    assert refused.returncode != 0
    assert "volume c1:svm1:vol_ds2 also holds disks of %s" % lab.name("y") in refused.stdout, run_output(refused)
    assert "files on the volume of VM" not in refused.stdout  # named once
    assert "volume restore deletes 1 newer snapshot(s) of c1:svm1:vol_ds2: %s" % later in refused.stdout, run_output(refused)
    proc = lab.run("restore", lab.inv, dict(extra, kvmsnap_restore_volume_override=True))
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    assert rep["mode"] == "volume" and rep["safety_snapshot"] is None
    assert rep["deleted_snapshots"] == [later]
    assert any("no safety copy survives a volume restore" in w for w in rep["warnings"]), rep["warnings"]
    assert any("deletes 1 newer snapshot(s) of c1:svm1:vol_ds2: %s" % later in w for w in rep["warnings"])
    assert any("rolls back the files of the other VM(s)" in w and lab.name("y") in w for w in rep["warnings"])
    # said before anything happened, in the pre-flight output
    head = proc.stdout.split("Stop the VMs and define them")[0]
    assert "no safety copy survives a volume restore" in head and later in head, run_output(proc)
    assert lab.snapshots("s1", "vol_ds2") == [SNAP]
