"""vm_info on the lab libvirtd: a real lab guest whose disk sits in the ONTAP simulator's volume,
and minimal guests in every state."""

from __future__ import annotations

import os
import time

import guestlab
import libvirt
import pytest
from helpers.guest_fixtures import SYSTEM_URI

pytestmark = [pytest.mark.needs_libvirtd]


@pytest.mark.needs_kvm_guests
@pytest.mark.slow
def test_real_guest_in_a_datastore(real_guest, ontap_sim, module_runner, tmp_path):
    ds = ontap_sim.data / "volumes" / "svm1" / "vol_ds1"
    vmdir = ds / f"{guestlab.run_prefix()}vmA"
    vmdir.mkdir(parents=True, exist_ok=True)
    guest = real_guest(disk_dir=vmdir)
    datastores = [{"path": str(ds), "controller": "lab", "svm": "svm1", "volume": "vol_ds1"}]

    r = module_runner("vm_info", {"uri": SYSTEM_URI, "vms": [guest.name], "datastores": datastores})
    assert r.rc == 0, r.get("msg")
    vm = r["vms"][0]
    assert vm["name"] == guest.name and vm["state"] == "running" and vm["persistent"] is True
    assert vm["agent"] == {"present": True, "connected": True}
    disk = vm["disks"][0]
    assert disk["path"] == guest.disk_path and disk["target"] == "vda" and disk["format"] == "raw"
    assert (disk["controller"], disk["svm"], disk["volume"]) == ("lab", "svm1", "vol_ds1")
    assert disk["path_in_volume"] == "/" + os.path.relpath(guest.disk_path, ds)
    assert r["volumes"] == [{"controller": "lab", "svm": "svm1", "volume": "vol_ds1", "vms": [guest.name],
                             "luns": [], "paths": [disk["path_in_volume"]]}]

    # the same guest through NFS: the mount table (fixture root) + the simulator's LIF and junctions
    root = tmp_path / "host"
    (root / "proc" / "self").mkdir(parents=True)
    (root / "proc" / "self" / "mountinfo").write_text(
        "22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
        "112 22 0:52 / %s rw,relatime shared:60 - nfs 127.0.0.1:/vol_ds1 rw,vers=3,hard,proto=tcp,"
        "sec=sys,local_lock=none,addr=127.0.0.1\n" % ds)
    r = module_runner("vm_info", {"uri": SYSTEM_URI, "query": "[?name=='%s']" % guest.name,
                                  "host_root": str(root), "controllers": [dict(ontap_sim.conn(), name="lab")]})
    assert r.rc == 0, r.get("msg")
    disk = r["vms"][0]["disks"][0]
    assert (disk["svm"], disk["volume"], disk["mapped_by"]) == ("svm1", "vol_ds1", "nfs")
    assert disk["path_in_volume"] == "/" + os.path.relpath(guest.disk_path, ds)

    # the ACPI power button (what a plain virsh shutdown sends) stops the lab guest cleanly
    guest.dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
    for _i in range(150):
        if not guest.dom.isActive():
            break
        time.sleep(0.2)
    assert not guest.dom.isActive()
    assert guestlab.fsck_disk(guest.disk_path)[0] == 0
    r = module_runner("vm_info", {"uri": SYSTEM_URI, "vms": [guest.dom.UUIDString()], "datastores": datastores})
    assert r["vms"][0]["state"] == "shutoff" and r["vms"][0]["agent"] == {"present": True, "connected": False}


def test_minimal_guests_states(minimal_guests, libvirt_system, module_runner, tmp_path):
    ds = tmp_path / "ds"
    running, paused, stopped = minimal_guests(3, workdir=ds)
    paused.suspend()
    stopped.destroy()
    (transient,) = minimal_guests(1, workdir=ds, transient=True)
    names = [d.name() for d in (running, paused, stopped, transient)]
    r = module_runner("vm_info", {"uri": SYSTEM_URI, "vms": names,
                                  "datastores": [{"path": str(ds), "controller": "c", "svm": "s", "volume": "v"}]})
    assert r.rc == 0, r.get("msg")
    got = {v["name"]: (v["state"], v["persistent"], v["agent"]["present"]) for v in r["vms"]}
    assert got == {names[0]: ("running", True, False), names[1]: ("paused", True, False),
                   names[2]: ("shutoff", True, False), names[3]: ("running", False, False)}
    for vm in r["vms"]:
        assert vm["disks"][0]["path_in_volume"] == "/%s.img" % vm["name"]
        assert vm["disks"][0]["target"] == "hda"


def test_read_only_connection_cannot_change_anything(libvirt_system):
    from ansible_collections.kvmsnap.core.plugins.module_utils import _libvirt
    conn = _libvirt.open_connection(SYSTEM_URI, readonly=True)
    try:
        with pytest.raises(libvirt.libvirtError):
            conn.defineXML("<domain type='qemu'><name>%sro</name><memory>1024</memory>"
                           "<os><type>hvm</type></os></domain>" % guestlab.run_prefix())
    finally:
        conn.close()


@pytest.mark.slow
def test_dozens_of_minimal_guests(minimal_guests, libvirt_system, module_runner, tmp_path, capsys):
    ds = tmp_path / "ds"
    running = minimal_guests(8, workdir=ds)
    defined = minimal_guests(24, workdir=ds, start=False)
    names = sorted(d.name() for d in running + defined)
    prefix = guestlab.run_prefix()
    r = module_runner("vm_info", {"uri": SYSTEM_URI, "query": "[?starts_with(name, '%s')]" % prefix,
                                  "datastores": [{"path": str(ds), "controller": "c", "svm": "s", "volume": "v"}]})
    assert r.rc == 0, r.get("msg")
    mine = [v for v in r["vms"] if v["name"] in names]
    assert sorted(v["name"] for v in mine) == names
    assert sum(v["state"] == "running" for v in mine) == 8 and sum(v["state"] == "shutoff" for v in mine) == 24
    assert r["volumes"][0]["volume"] == "v" and set(names) <= set(r["volumes"][0]["vms"])
    with capsys.disabled():
        print(f"\n[vm_info the lab libvirtd] {len(r['vms'])} domains listed in {r['elapsed_ms']:.0f} ms "
              f"({r['timings']})")
