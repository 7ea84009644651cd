"""libvirt test-driver VMs whose disks lie in the ONTAP simulator's volumes (vm_backup tests).

sim_clean        function: the session simulator with no fault rule before and after the test.
testdriver_conn  function: a connection to test:///default (libvirt errors not printed).
backup_vms       function: factory backup_vms(n, extra_disk=None) -> names of n running test-driver VMs, disks
                 alternating on svm1/vol_ds1 and svm1/vol_ds2 (extra_disk: a second disk of the first VM);
                 all destroyed, undefined and their disks removed at the end.
backup_params    function backup_params(sim, tmp_path, names, prefix, **kw): vm_backup parameters for those VMs
                 (suspend, both volumes as datastores, a fresh snapshot name <prefix>_<hex>), KW overriding.
"""

from __future__ import annotations

import re
import uuid

import pytest


@pytest.fixture
def sim_clean(ontap_sim):
    ontap_sim.admin("DELETE", "/_sim/faults")
    yield ontap_sim
    ontap_sim.admin("DELETE", "/_sim/faults")


@pytest.fixture
def testdriver_conn():
    libvirt = pytest.importorskip("libvirt")
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    c = libvirt.open("test:///default")
    yield c
    c.close()


@pytest.fixture
def backup_vms(testdriver_conn, sim_clean):
    libvirt = pytest.importorskip("libvirt")
    conn = testdriver_conn
    made = []
    base = re.sub(r"<uuid>.*</uuid>", "", conn.lookupByName("test").XMLDesc())
    vols = sim_clean.data / "volumes" / "svm1"

    def make(n, extra_disk=None):
        names = []
        for i in range(n):
            name = "bk-%s" % uuid.uuid4().hex[:8]
            disk = vols / ("vol_ds1" if i % 2 == 0 else "vol_ds2") / (name + ".qcow2")
            disk.write_bytes(b"\0" * 4096)
            xml = base.replace("<name>test</name>", "<name>%s</name>" % name).replace("/guest/diskimage1", str(disk))
            if extra_disk and i == 0:
                xml = xml.replace("</devices>", "<disk type='file' device='disk'><source file='%s'/>"
                                  "<target dev='vdb' bus='virtio'/></disk></devices>" % extra_disk)
            dom = conn.defineXML(xml)
            dom.create()
            made.append((dom, disk))
            names.append(name)
        return names

    yield make
    for dom, disk in made:
        try:
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        except libvirt.libvirtError:
            pass
        disk.unlink(missing_ok=True)


def backup_params(sim, tmp_path, names, prefix, **kw):
    vols = sim.data / "volumes" / "svm1"
    p = dict(uri="test:///default", vms=names, mode="suspend", deadline=20, state_dir=str(tmp_path / "state"),
             agent_timeout=5, allow_crash_consistent=False, volumes=None, vm_mapping=None,
             datastores=[{"path": str(vols / "vol_ds1"), "svm": "svm1", "volume": "vol_ds1"},
                         {"path": str(vols / "vol_ds2"), "svm": "svm1", "volume": "vol_ds2"}],
             name="%s_%s" % (prefix, uuid.uuid4().hex[:10]), comment=None, snapmirror_label=None, policy="daily")
    p.update(sim.conn())
    p.update(timeout=30, retries=1, port=sim.port, cert_file=None, key_file=None)
    p.update(kw)
    return p
