"""vm_info against libvirt's test driver (test:///<node.xml>): ~50 domains, no daemon needed."""

from __future__ import annotations

import guestlab
import pytest

N = 50


@pytest.fixture
def node(tmp_path):
    ds = str(tmp_path / "ds1")
    specs = guestlab.make_test_domains(N, ds)
    uri = guestlab.write_test_node(str(tmp_path / "node.xml"), specs)
    return {"uri": uri, "ds": ds, "specs": specs, "tmp": tmp_path}


def _ds(node, **kw):
    entry = {"path": node["ds"], "controller": "cluster1", "svm": "svm1", "volume": "vol_ds1"}
    entry.update(kw)
    return [entry]


def test_lists_every_domain_with_disks_and_locations(node, module_runner):
    r = module_runner("vm_info", {"uri": node["uri"], "datastores": _ds(node)})
    assert r.rc == 0, r.get("msg")
    assert r["changed"] is False
    vms = r["vms"]
    assert [v["name"] for v in vms] == sorted(s["name"] for s in node["specs"])
    by_name = {s["name"]: s for s in node["specs"]}
    for vm in vms:
        spec = by_name[vm["name"]]
        assert vm["uuid"] == spec["uuid"]
        assert vm["state"] == spec["state"]
        assert vm["persistent"] is (not spec["transient"])
        assert vm["agent"]["present"] is spec["agent"]
        assert vm["agent"]["connected"] is False       # the test driver has no live agent
        assert vm["nvram"] == spec["nvram"]
        assert len(vm["disks"]) == len(spec["disks"])
        for disk, dspec in zip(vm["disks"], spec["disks"]):
            assert disk["path"] == dspec["path"] and disk["target"] == dspec["target"]
            assert disk["device"] == dspec["device"] and disk["format"] == dspec["format"]
            if dspec["device"] == "cdrom":
                assert disk["skipped"] is True and disk["readonly"] is True and disk["volume"] is None
                continue
            assert (disk["controller"], disk["svm"], disk["volume"]) == ("cluster1", "svm1", "vol_ds1")
            assert disk["path_in_volume"] == dspec["path"][len(node["ds"]):]
            assert disk["mapped_by"] == "datastores" and disk["lun"] is None
            if dspec.get("backing"):
                chain = disk["backing_chain"]
                assert [b["path"] for b in chain] == [b["path"] for b in dspec["backing"]]
                assert chain[0]["path_in_volume"] == "/base/data-base.qcow2"
    assert r["unprotectable"] == []
    assert len(r["volumes"]) == 1 and len(r["volumes"][0]["vms"]) == N
    assert r["datastores"][0]["path"] == node["ds"] and len(r["datastores"][0]["vms"]) == N
    assert r["elapsed_ms"] > 0


def test_query_and_vms_select(node, module_runner):
    running = [s for s in node["specs"] if s["state"] == "running"]
    r = module_runner("vm_info", {"uri": node["uri"], "datastores": _ds(node), "query": "[?state=='running']"})
    assert r.rc == 0, r.get("msg")
    assert sorted(v["name"] for v in r["vms"]) == sorted(s["name"] for s in running)
    r = module_runner("vm_info", {"uri": node["uri"], "datastores": _ds(node),
                                  "query": "[?agent.present && persistent]"})
    assert {v["name"] for v in r["vms"]} == {s["name"] for s in node["specs"] if s["agent"] and not s["transient"]}
    r = module_runner("vm_info", {"uri": node["uri"], "datastores": _ds(node),
                                  "vms": ["vm0003", node["specs"][7]["uuid"], "vm0003"]})
    assert [v["name"] for v in r["vms"]] == ["vm0003", "vm0007"]
    r = module_runner("vm_info", {"uri": node["uri"], "datastores": _ds(node), "vms": ["vm0001"],
                                  "query": "[?state=='running']"})
    assert r.rc == 0 and r["vms"] == []   # vm0001 is paused


def test_unknown_vms_are_all_named(node, module_runner):
    r = module_runner("vm_info", {"uri": node["uri"], "vms": ["vm0001", "nope", "$(id)",
                                                              "00000000-0000-0000-0000-00000000ffff"]})
    assert r.failed
    assert "'nope'" in r["msg"] and "'$(id)'" in r["msg"] and "00000000-0000-0000-0000-00000000ffff" in r["msg"]


def test_unknown_vms_reported_for_multi_host_lists(node, module_runner):
    r = module_runner("vm_info", {"uri": node["uri"], "map_storage": False, "unknown_vms": "report",
                                  "vms": ["vm0001", "on-another-host", "vm0002"]})
    assert r.rc == 0, r.get("msg")
    assert [v["name"] for v in r["vms"]] == ["vm0001", "vm0002"] and r["not_found"] == ["on-another-host"]


def test_bad_query(node, module_runner):
    r = module_runner("vm_info", {"uri": node["uri"], "map_storage": False, "query": "[?state=="})
    assert r.failed and "not a valid JMESPath" in r["msg"]
    r = module_runner("vm_info", {"uri": node["uri"], "map_storage": False, "query": "[].name"})
    assert r.failed and "must select VMs" in r["msg"]


def test_strict_names_vm_and_disk(node, module_runner):
    other = str(node["tmp"] / "elsewhere")
    r = module_runner("vm_info", {"uri": node["uri"], "datastores": _ds(node, path=other), "vms": ["vm0000"]})
    assert r.failed
    assert "VM vm0000 disk vda" in r["msg"] and "VM vm0000 disk vdb" in r["msg"] and "strict: false" in r["msg"]
    assert "hdc" not in r["msg"]   # the cdrom is skipped, not an error
    r = module_runner("vm_info", {"uri": node["uri"], "datastores": _ds(node, path=other), "strict": False,
                                  "vms": ["vm0000"]})
    assert r.rc == 0
    reasons = [(u["vm"], u["disk"], u["severity"]) for u in r["unprotectable"]]
    assert ("vm0000", "vda", "error") in reasons and ("vm0000", "vdb", "error") in reasons
    assert r["vms"][0]["disks"][0]["volume"] is None and r["vms"][0]["disks"][0]["reason"]


def test_backing_file_outside_the_datastores(node, module_runner):
    # the base image lives in <ds>/base: map only the VM directory, not the base
    r = module_runner("vm_info", {"uri": node["uri"], "strict": False, "vms": ["vm0003"],
                                  "datastores": _ds(node, path=node["ds"] + "/vm0003")})
    assert r.rc == 0
    assert [u["disk"] for u in r["unprotectable"]] == ["vdb"]
    assert "backing file" in r["unprotectable"][0]["reason"]


def test_check_mode_is_the_same(node, module_runner):
    args = {"uri": node["uri"], "datastores": _ds(node), "vms": ["vm0005"]}
    assert module_runner("vm_info", args, check_mode=True)["vms"] == module_runner("vm_info", args)["vms"]


def test_vm_mapping_errors_fail_before_listing(node, module_runner):
    for mapping, text in (("VM1:c:/vol/v/l;;VM2:c:/vol/v/m", "entry 2 is empty"),
                          ("VM1:ctrl", "expected vm:controller:path"),
                          ("VM1:fe80::1:/vol/v/l", "brackets"),
                          ("VM1:c:/vol/v/l,VM2:c:/vol/v/m", "not ','")):
        r = module_runner("vm_info", {"uri": node["uri"], "vm_mapping": mapping})
        assert r.failed and text in r["msg"], (mapping, r.get("msg"))


def test_nfs_mapping_through_the_mount_table(node, module_runner):
    # a host whose mount table says the datastore is an NFS export of svm1 (root format fixture)
    root = node["tmp"] / "host"
    (root / "proc" / "self").mkdir(parents=True)
    (root / "proc" / "self" / "mountinfo").write_text(
        "22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
        "112 22 0:52 / %s rw,relatime shared:60 - nfs 10.10.10.11:/vmstore/ds1 rw,vers=3,hard,proto=tcp,"
        "sec=sys,mountaddr=10.10.10.11,local_lock=none,addr=10.10.10.11\n" % node["ds"])
    inventory = [{"controller": "cluster1", "svm": "svm1", "lifs": ["10.10.10.11"],
                  "volumes": [{"name": "svm1_root", "junction_path": "/"},
                              {"name": "vmstore", "junction_path": "/vmstore"},
                              {"name": "vmstore_ds1", "junction_path": "/vmstore/ds1"}]}]
    r = module_runner("vm_info", {"uri": node["uri"], "host_root": str(root), "storage_inventory": inventory,
                                  "vms": ["vm0003"]})
    assert r.rc == 0, r.get("msg")
    disk = r["vms"][0]["disks"][0]
    assert (disk["controller"], disk["svm"], disk["volume"], disk["path_in_volume"], disk["mapped_by"]) == (
        "cluster1", "svm1", "vmstore_ds1", "/vm0003/vm0003-root.qcow2", "nfs")
    assert r["datastores"][0]["path"] == node["ds"] and r["datastores"][0]["mapped_by"] == "nfs"


def test_uri_from_environment(node, module_runner):
    r = module_runner("vm_info", {"map_storage": False, "vms": ["vm0002"]}, env={"LIBVIRT_DEFAULT_URI": node["uri"]})
    assert r.rc == 0, r.get("msg")
    assert r["vms"][0]["name"] == "vm0002"


def test_unreachable_libvirt_names_the_uri(module_runner):
    r = module_runner("vm_info", {"uri": "qemu+unix:///system?socket=/nonexistent/sock", "retries": 0})
    assert r.failed and "cannot connect to libvirt" in r["msg"] and "/nonexistent/sock" in r["msg"]


@pytest.mark.parametrize("transport", ["rest", "zapi"])
def test_controllers_through_the_ontap_interface(node, module_runner, ontap_sim, transport):
    # NFS datastore mounted from the simulator's data LIF (127.0.0.1:/vol_ds1); LIFs and junction
    # paths are read from the simulator through the collection's ONTAP client (REST).
    root = node["tmp"] / "host"
    (root / "proc" / "self").mkdir(parents=True)
    (root / "proc" / "self" / "mountinfo").write_text(
        "22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
        "112 22 0:52 / %s rw,relatime shared:60 - nfs 127.0.0.1:/vol_ds1 rw,vers=3,hard,proto=tcp,"
        "sec=sys,local_lock=none,addr=127.0.0.1\n" % node["ds"])
    # the read-only user is enough: discovery only reads
    controller = dict(ontap_sim.conn(transport, username="backup_ro"), name="lab")
    r = module_runner("vm_info", {"uri": node["uri"], "host_root": str(root), "controllers": [controller],
                                  "vms": ["vm0000", "vm0001"]})
    assert r.rc == 0, r.get("msg")
    disks = [d for vm in r["vms"] for d in vm["disks"] if not d["skipped"]]
    assert {(d["controller"], d["svm"], d["volume"], d["mapped_by"]) for d in disks} == {
        ("lab", "svm1", "vol_ds1", "nfs")}
    assert disks[0]["path_in_volume"] == "/vm0000/vm0000-root.qcow2"
    assert "netapp123" not in str(r)

    bad = dict(controller, password="wrong-password")
    r = module_runner("vm_info", {"uri": node["uri"], "host_root": str(root), "controllers": [bad],
                                  "vms": ["vm0000"]})
    assert r.failed and "wrong-password" not in str(r)


FIXTURES = __import__("pathlib").Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "domains"


def test_parse_a_real_live_domain_xml():
    from ansible_collections.kvmsnap.core.plugins.module_utils._domain_xml import parse_domain_xml
    vm = parse_domain_xml((FIXTURES / "db01-live.xml").read_text())
    assert (vm["name"], vm["uuid"], vm["type"]) == ("db01", "5b8e6f2c-3d1a-4c8e-9f0b-2a7d4e6c1b39", "kvm")
    assert vm["nvram"] == "/var/lib/libvirt/qemu/nvram/db01_VARS.fd"
    assert vm["loader"] == {"path": "/usr/share/OVMF/OVMF_CODE_4M.ms.fd", "type": "pflash", "readonly": True,
                            "firmware": "efi"}
    assert vm["agent"] == {"present": True, "connected": True}
    root, blk, net, iso, empty = vm["disks"]
    assert (root["type"], root["format"], root["target"], root["path"]) == (
        "file", "qcow2", "vda", "/mnt/ds1/db01/db01-root.qcow2")
    assert [(b["format"], b["path"]) for b in root["backing_chain"]] == [
        ("qcow2", "/mnt/ds1/templates/debian12.qcow2"), ("raw", "/mnt/ds1/templates/debian12-base.raw")]
    assert (blk["type"], blk["path"], blk["shareable"], blk["backing_chain"]) == ("block", "/dev/mapper/mpatha", True, [])
    assert (net["type"], net["path"], net["source"]["hosts"][0]["name"]) == (
        "network", "iscsi:iqn.1992-08.com.netapp:sn.4082367740/0", "10.10.30.11")
    assert (iso["device"], iso["readonly"], iso["bus"]) == ("cdrom", True, "sata")
    assert empty["path"] is None and empty["device"] == "cdrom"


def test_rich_domain_through_the_module(tmp_path, module_runner):
    xml = (FIXTURES / "db01-live.xml").read_text()
    # the test driver takes the same XML (type test); block/iscsi disks are mapped by vm_mapping
    xml = xml.replace("<domain type='kvm' id='7'>", "<domain type='test'>").replace("<os firmware='efi'>", "<os>")
    node = tmp_path / "node.xml"
    node.write_text("<node>%s</node>" % xml)
    r = module_runner("vm_info", {
        "uri": "test://%s" % node, "strict": False,
        "datastores": [{"path": "/mnt/ds1", "controller": "cluster1", "svm": "svm_nfs", "volume": "vol_ds1"}],
        "vm_mapping": [{"vm": "db01", "controller": "cluster1", "svm": "svm_san", "path": "/vol/vol_db/lun_db01"}],
        "storage_inventory": [{"controller": "cluster1", "svm": "svm_san",
                               "luns": [{"path": "/vol/vol_db/lun_db01", "serial": "D31sh#DQGQUu"}]}]})
    assert r.rc == 0, r.get("msg")
    vm = r["vms"][0]
    disks = {d["target"]: d for d in vm["disks"]}
    assert disks["vda"]["path_in_volume"] == "/db01/db01-root.qcow2"
    assert [b["path_in_volume"] for b in disks["vda"]["backing_chain"]] == [
        "/templates/debian12.qcow2", "/templates/debian12-base.raw"]
    assert disks["vdb"]["lun"] == {"path": "/vol/vol_db/lun_db01", "serial": "D31sh#DQGQUu"}
    assert (disks["vdb"]["svm"], disks["vdb"]["volume"], disks["vdb"]["mapped_by"]) == ("svm_san", "vol_db", "vm_mapping")
    assert disks["vdc"]["lun"]["path"] == "/vol/vol_db/lun_db01"
    assert disks["sda"]["skipped"] and disks["sdb"]["skipped"]
    assert vm["nvram"] == "/var/lib/libvirt/qemu/nvram/db01_VARS.fd"
    # /dev/mapper/mpatha is not on this host: the serial cross-check is skipped, nothing unprotectable
    assert r["unprotectable"] == []
    vols = {(v["svm"], v["volume"]): v for v in r["volumes"]}
    assert vols[("svm_san", "vol_db")]["luns"] == ["/vol/vol_db/lun_db01"]
    assert vols[("svm_nfs", "vol_ds1")]["vms"] == ["db01"]


def _sysfs_tree(root):
    import json
    import os
    spec = json.loads((FIXTURES.parent / "sysfs" / "kvm2-san.json").read_text())
    for path, content in spec["files"].items():
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    for path in spec["dirs"] + [os.path.dirname(d) for d in spec["devices"]]:
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for path in spec["devices"]:
        (root / path.lstrip("/")).write_text("")
    for path, target in spec["links"].items():
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, p)
    (root / "proc" / "self").mkdir(parents=True)
    (root / "proc" / "self" / "mountinfo").write_text("22 1 252:1 / / rw,relatime - ext4 /dev/vda1 rw\n")


def test_san_disks_through_multipath_and_the_simulator(tmp_path, module_runner, sim_factory):
    sim = sim_factory({"volumes": [{"name": "vol_san", "svm": "svm1", "junction_path": None, "size": "2G"}],
                       "luns": [{"path": "/vol/vol_san/lun1", "svm": "svm1", "size": "64M",
                                 "serial_number": "D31sh#DQGQUu", "os_type": "linux"},
                                {"path": "/vol/vol_san/lun_pv", "svm": "svm1", "size": "64M",
                                 "serial_number": "wB3Jl$Kp7*Q!", "os_type": "linux"}]})
    specs = [{"name": "san1", "uuid": "5a000000-0000-4000-8000-000000000001", "state": "running",
              "disks": [{"type": "block", "device": "disk", "format": "raw", "target": "vda",
                         "path": "/dev/mapper/mpatha"}]},
             {"name": "san2", "uuid": "5a000000-0000-4000-8000-000000000002", "state": "running",
              "disks": [{"type": "block", "device": "disk", "format": "raw", "target": "vda",
                         "path": "/dev/disk/by-id/dm-uuid-mpath-3600a0980443331736823445147515575"}]},
             {"name": "lvm3", "uuid": "5a000000-0000-4000-8000-000000000003", "state": "shutoff",
              "disks": [{"type": "block", "device": "disk", "format": "raw", "target": "vda",
                         "path": "/dev/vg_san/lv_vm3"}]},
             {"name": "eseries", "uuid": "5a000000-0000-4000-8000-000000000004", "state": "shutoff",
              "disks": [{"type": "block", "device": "disk", "format": "raw", "target": "vda",
                         "path": "/dev/mapper/eseries"}]}]
    uri = guestlab.write_test_node(str(tmp_path / "node.xml"), specs)
    root = tmp_path / "host"
    _sysfs_tree(root)
    ctrl = [dict(sim.conn("rest", username="backup_ro"), name="lab")]
    r = module_runner("vm_info", {"uri": uri, "host_root": str(root), "controllers": ctrl, "strict": False})
    assert r.rc == 0, r.get("msg")
    vms = {v["name"]: v for v in r["vms"]}
    lun = vms["san1"]["disks"][0]["lun"]
    assert lun == {"path": "/vol/vol_san/lun1", "serial": "D31sh#DQGQUu", "wwid": "3600a0980443331736823445147515575"}
    assert (vms["san1"]["disks"][0]["svm"], vms["san1"]["disks"][0]["volume"]) == ("svm1", "vol_san")
    assert vms["lvm3"]["disks"][0]["lun"]["path"] == "/vol/vol_san/lun_pv"
    got = sorted((u["vm"], u["severity"], u["reason"].split(":")[0]) for u in r["unprotectable"])
    assert [g[:2] for g in got] == [("eseries", "error"), ("lvm3", "note"), ("san1", "error"), ("san2", "error")]
    assert "several VMs (san1, san2)" in [u for u in r["unprotectable"] if u["vm"] == "san1"][0]["reason"]
    assert {"vm": "lvm3", "controller": "lab", "svm": "svm1", "volume": "vol_san",
            "path": "/vol/vol_san/lun_pv"} in r["vm_mapping"]
    # strict: the shared LUN and the non-ONTAP disk fail the task; the LVM note does not
    r = module_runner("vm_info", {"uri": uri, "host_root": str(root), "controllers": ctrl, "vms": ["lvm3"]})
    assert r.rc == 0, r.get("msg")
    r = module_runner("vm_info", {"uri": uri, "host_root": str(root), "controllers": ctrl, "vms": ["san1", "eseries"]})
    assert r.failed and "VM eseries disk vda" in r["msg"] and "several VMs" in r["msg"]
