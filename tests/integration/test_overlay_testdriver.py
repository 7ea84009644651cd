"""The overlay fence's inspection and plan through libvirt's test driver: what libvirt reports (live XML, state,
persistence, block jobs it cannot tell) becomes the VM's fence and its overlay files beside its disks."""

from __future__ import annotations

import re
import uuid

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils._fence_conn import SharedConnection
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_rules import parse_overlay_name
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_run import plan_vms

URI = "test:///default"
DISKS = ("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{ds}/{name}.qcow2'/>"
         "<target dev='vda' bus='virtio'/></disk>"
         "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{ds}/{name}-b.img'/>"
         "<target dev='vdb' bus='virtio'/></disk>"
         "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='hdc' bus='ide'/><readonly/>"
         "</disk>")


@pytest.fixture
def make_vm(testdriver_conn, tmp_path):
    conn = testdriver_conn
    base = re.sub(r"<uuid>.*</uuid>", "", conn.lookupByName("test").XMLDesc())
    base = re.sub(r"<disk .*?</disk>", "", base, flags=re.S)
    made = []

    def make(state="running", transient=False, extra=""):
        name = "ovl-%s" % uuid.uuid4().hex[:8]
        disks = DISKS.format(ds=tmp_path, name=name).replace("</disk><disk type='file' device='cdrom'>",
                                                             "%s</disk><disk type='file' device='cdrom'>" % extra, 1)
        xml = base.replace("<name>test</name>", "<name>%s</name>" % name).replace("<devices>", "<devices>" + disks)
        if transient:
            dom = conn.createXML(xml, 0)
        else:
            dom = conn.defineXML(xml)
            if state != "shutoff":
                dom.create()
        if state == "paused":
            dom.suspend()
        made.append(dom)
        return dom

    yield make
    for dom in made:
        try:
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefine()
        except Exception:
            pass


@pytest.fixture
def sc():
    conn = SharedConnection(URI, retries=0)
    yield conn
    conn.close()


def test_running_persistent_vm_gets_overlays_beside_its_disks(make_vm, sc, tmp_path):
    dom = make_vm()
    vm_uuid = dom.UUIDString()
    plan = plan_vms(sc, [vm_uuid], "backup-1:x")[0]
    assert (plan["name"], plan["fence"], plan["reason"], plan["prior_state"]) == (dom.name(), "overlay", None, "running")
    assert plan["skipped"] == ["hdc"]
    assert [(o["target"], o["base"], o["format"]) for o in plan["overlays"]] == [
        ("vda", "%s/%s.qcow2" % (tmp_path, dom.name()), "qcow2"), ("vdb", "%s/%s-b.img" % (tmp_path, dom.name()), "raw")]
    for o in plan["overlays"]:
        assert o["overlay"].startswith(str(tmp_path) + "/.kvmsnap-overlay.")
        assert parse_overlay_name(o["overlay"]) == {"uuid": vm_uuid, "target": o["target"], "run": "backup-1_x"}


@pytest.mark.parametrize("kw, why", [
    ({"transient": True}, "transient"),
    ({"state": "paused"}, "paused before this run"),
    ({"state": "shutoff"}, "shut off"),
    ({"extra": "<shareable/>"}, "-b.img): shareable: other VMs"),
])
def test_vms_sent_to_direct(make_vm, sc, kw, why):
    dom = make_vm(**kw)
    plan = plan_vms(sc, [dom.UUIDString()], "r")[0]
    assert plan["fence"] == "direct" and why in plan["reason"] and plan["overlays"] == [], plan


def test_precreate_makes_qcow2_overlays_and_never_reuses_a_file(make_vm, sc, tmp_path):
    import json
    import subprocess

    from ansible_collections.kvmsnap.core.plugins.module_utils._overlay import precreate
    dom = make_vm()
    plan = plan_vms(sc, [dom.UUIDString()], "run-p")[0]
    first, second = plan["overlays"]
    precreate(sc, plan["uuid"], [first])
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", first["overlay"]], check=True,
                                     capture_output=True, text=True).stdout)
    capacity = dom.blockInfo("vda", 0)[0]
    assert (info["format"], info["virtual-size"], info["backing-filename"], info["backing-filename-format"]) == (
        "qcow2", capacity, first["base"], "qcow2")
    # a file already there (a leftover, somebody else's) is never reused; what this call made is removed again
    with open(second["overlay"], "wb") as fh:
        fh.write(b"not mine")
    with pytest.raises(OSError):
        precreate(sc, plan["uuid"], [dict(first, overlay=first["overlay"] + ".new.qcow2"), second])
    assert not (tmp_path / (first["overlay"] + ".new.qcow2")).exists()
    assert open(second["overlay"], "rb").read() == b"not mine"
