"""Pure rules of the overlay fence: which disks and VMs can take an overlay (and why not), the overlay files'
names, the snapshot XML, leftovers in a domain XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _overlay_rules as rules
from ansible_collections.kvmsnap.core.plugins.module_utils._domain_xml import parse_root

UUID = "3f0e4a52-9d1b-4c1e-8f51-0a2b3c4d5e6f"


def disk(path="/ds/vm1.qcow2", fmt="qcow2", target="vda", dtype="file", device="disk", extra="", backing=""):
    src = "" if path is None else ("<source dev='%s'/>" % path if dtype == "block" else "<source file='%s'/>" % path)
    return ("<disk type='%s' device='%s'><driver name='qemu' type='%s'%s/>%s%s<target dev='%s' bus='virtio'/>%s</disk>"
            % (dtype, device, fmt, " cache='unsafe'" if "unsafe" in extra else "", src, backing, target,
               extra.replace("unsafe", "")))


def facts(*disks):
    xml = "<domain type='kvm'><name>vm1</name><uuid>%s</uuid><devices>%s</devices></domain>" % (UUID, "".join(disks))
    return rules.vm_facts(parse_root(xml))


def decide(*disks, state="running", persistent=True, jobs=None):
    return rules.eligibility(facts(*disks), state, persistent, jobs)


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_file_disks_get_an_overlay(fmt):
    out = decide(disk(fmt=fmt), disk("/ds/vm1-b.img", fmt=fmt, target="vdb"))
    assert out["fence"] == "overlay" and out["reason"] is None
    assert [(d["target"], d["action"]) for d in out["disks"]] == [("vda", "overlay"), ("vdb", "overlay")]


def test_disk_with_backing_chain_is_overlaid_on_top():
    backing = "<backingStore type='file'><format type='qcow2'/><source file='/ds/base.qcow2'/><backingStore/></backingStore>"
    out = decide(disk(backing=backing))
    assert out["fence"] == "overlay"
    assert out["disks"][0]["action"] == "overlay" and "backing chain of 1" in out["disks"][0]["reason"]
    assert out["reason"] == "disk vda (/ds/vm1.qcow2): backing chain of 1 image(s): overlaid on top"


@pytest.mark.parametrize("kw, why", [
    ({"dtype": "block", "path": "/dev/mapper/3600a0980", "fmt": "raw"}, "block device"),
    ({"device": "lun", "dtype": "block", "path": "/dev/sdb", "fmt": "raw"}, "pass-through LUN"),
    ({"dtype": "network", "path": None, "fmt": "raw"}, "network disk"),
    ({"extra": "<shareable/>"}, "shareable"),
    ({"extra": "unsafe"}, "cache=unsafe"),
    ({"extra": "<encryption format='luks'/>"}, "encrypted"),
    ({"fmt": "vmdk"}, "format vmdk"),
    ({"device": "floppy", "path": "/ds/fd.img", "fmt": "raw"}, "writable floppy"),
    ({"path": "/ds/.kvmsnap-overlay.%s.vda.run-1.qcow2" % UUID}, "already runs on a kvmsnap overlay of run run-1"),
])
def test_a_disk_that_cannot_be_overlaid_sends_the_vm_to_direct(kw, why):
    out = decide(disk("/ds/other.qcow2", target="vdb"), disk(**kw))
    assert out["fence"] == "direct"
    assert why in out["reason"] and "disk vda" in out["reason"]
    assert [d["action"] for d in out["disks"]] == ["overlay", "refuse"]


def test_kvmsnap_overlay_in_backing_chain_refused():
    backing = ("<backingStore type='file'><format type='qcow2'/><source file='/ds/.kvmsnap-overlay.%s.vda.r.qcow2'/>"
               "<backingStore/></backingStore>" % UUID)
    out = decide(disk(backing=backing))
    assert out["fence"] == "direct" and "in its backing chain" in out["reason"]


@pytest.mark.parametrize("kw", [
    {"extra": "<readonly/>"},
    {"extra": "<readonly/><shareable/>"},   # read-only wins: nothing changes
    {"device": "cdrom", "path": "/iso/install.iso", "fmt": "raw"},
    {"device": "cdrom", "path": None, "fmt": "raw"},
    {"dtype": "block", "path": "/dev/sdc", "fmt": "raw", "extra": "<readonly/>"},
])
def test_read_only_disks_are_skipped_not_refused(kw):
    out = decide(disk("/ds/vm1.qcow2"), disk(target="hdc", **kw))
    assert out["fence"] == "overlay"
    assert [d["action"] for d in out["disks"]] == ["overlay", "skip"]
    # the report says which disk was skipped and why (not a cdrom: most VMs have one); the overlaid one is not named
    if kw.get("device") == "cdrom":
        assert out["reason"] is None
    else:
        assert out["reason"] == "disk hdc (%s): read-only disk: nothing changes, nothing to overlay" % kw.get(
            "path", "/ds/vm1.qcow2")


def test_vm_with_only_read_only_disks_needs_no_pause():
    out = decide(disk(device="cdrom", path="/iso/x.iso", fmt="raw"))
    assert out["fence"] == "overlay" and "nothing to overlay" in out["reason"]
    assert rules.overlay_plan(UUID, "r", out) == []


@pytest.mark.parametrize("job, name", [(2, "copy"), (4, "active commit"), (5, "backup"), (9, "9")])
def test_a_running_block_job_sends_the_vm_to_direct(job, name):
    out = decide(disk(), disk("/ds/b.qcow2", target="vdb"), jobs={"vdb": job})
    assert out["fence"] == "direct" and "disk vdb" in out["reason"] and "a %s block job" % name in out["reason"]


@pytest.mark.parametrize("state, persistent, why", [
    ("running", False, "transient"),
    ("shutoff", True, "shut off"),
    ("paused", True, "paused before this run"),
    ("pmsuspended", True, "in state pmsuspended"),
])
def test_vm_state_and_transience(state, persistent, why):
    out = decide(disk(), state=state, persistent=persistent)
    assert out["fence"] == "direct" and why in out["reason"]


def test_overlay_names_are_recognisable():
    path = rules.overlay_path("/ds/sub/vm1.qcow2", UUID.upper(), "vda", "backup-20261130T200000Z-ab12:x")
    assert path == "/ds/sub/.kvmsnap-overlay.%s.vda.backup-20261130T200000Z-ab12_x.qcow2" % UUID
    assert rules.parse_overlay_name(path) == {"uuid": UUID, "target": "vda", "run": "backup-20261130T200000Z-ab12_x"}
    for other in ("/ds/vm1.qcow2", "/ds/.kvmsnap-overlay.not-a-uuid.vda.r.qcow2", "/ds/.kvmsnap-overlay.%s.vda.r.img"
                  % UUID, None, ""):
        assert rules.parse_overlay_name(other) is None and not rules.is_overlay_path(other)


def test_plan_and_snapshot_xml():
    out = decide(disk("/ds/a.qcow2"), disk("/ds/b.img", fmt="raw", target="vdb"),
                 disk(device="cdrom", path=None, fmt="raw", target="hdc"))
    plan = rules.overlay_plan(UUID, "run-1", out)
    assert [(p["target"], p["base"], p["format"], p["state"]) for p in plan] == [
        ("vda", "/ds/a.qcow2", "qcow2", "planned"), ("vdb", "/ds/b.img", "raw", "planned")]
    root = ET.fromstring(rules.snapshot_xml("run:1", plan, ["hdc"]))
    assert root.findtext("name") == "kvmsnap-run_1"
    got = {d.get("name"): (d.get("snapshot"), d.find("source").get("file") if d.find("source") is not None else None)
           for d in root.findall("disks/disk")}
    assert got == {"vda": ("external", plan[0]["overlay"]), "vdb": ("external", plan[1]["overlay"]), "hdc": ("no", None)}
    assert all(d.find("driver").get("type") == "qcow2" for d in root.findall("disks/disk") if d.get("snapshot") == "external")


def test_overlays_in_domain_finds_leftovers_with_their_base():
    ovl = "/ds/.kvmsnap-overlay.%s.vda.run-7.qcow2" % UUID
    backing = "<backingStore type='file'><format type='raw'/><source file='/ds/vm1.img'/><backingStore/></backingStore>"
    found = rules.overlays_in_domain(facts(disk(ovl, backing=backing), disk("/ds/b.qcow2", target="vdb")))
    assert found == [{"target": "vda", "overlay": ovl, "base": "/ds/vm1.img", "format": "raw", "uuid": UUID,
                      "run": "run-7"}]
    assert rules.overlays_in_domain(facts(disk(), disk("/ds/b.qcow2", target="vdb"))) == []
