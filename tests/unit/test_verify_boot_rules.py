"""The pure rules of kvmsnap.core.verify: the copy's domain XML, the parallel sizing, the verified token in the
snapshot comment, the catalog's latest_verified, the settings and the run's outcome."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _verify_boot_xml as vx
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import (
    SnapshotNameError,
    build_comment,
    parse_comment,
    restate_comment,
    verified_comment,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._verify_boot import VerifyBootError, check_work_dir
from ansible_collections.kvmsnap.core.plugins.module_utils._verify_boot_size import copy_cost_mib, plan_parallel
from ansible_collections.kvmsnap.core.plugins.plugin_utils import _verify_outcome
from ansible_collections.kvmsnap.core.plugins.plugin_utils._catalog import CatalogError, build_catalog, select
from ansible_collections.kvmsnap.core.plugins.plugin_utils._settings import SettingsError, resolve

UUID = "0b0e0d3c-54c3-4e3d-8f4b-1f6f1c2d3e4f"
SAVED = """<domain type='kvm'>
  <name>web1</name><uuid>%s</uuid><title>Web</title><description>prod web</description>
  <metadata><x:y xmlns:x='urn:x'/></metadata><genid>auto</genid>
  <memory unit='GiB'>2</memory><currentMemory unit='KiB'>1048576</currentMemory>
  <memoryBacking><access mode='shared'/></memoryBacking>
  <os><type arch='x86_64' machine='pc'>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>
      <nvram>/var/lib/libvirt/qemu/nvram/web1_VARS.fd</nvram></os>
  <on_reboot>restart</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/mnt/ds1/web1.img'/>
      <target dev='vda' bus='virtio'/><shareable/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/mnt/ds1/data/web1-b.qcow2'/>
      <backingStore type='file'><format type='raw'/><source file='/mnt/ds1/base.img'/></backingStore>
      <target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><source file='/isos/x.iso'/><target dev='hdc' bus='ide'/><readonly/></disk>
    <interface type='bridge'><mac address='52:54:00:11:22:33'/><source bridge='br0'/><model type='virtio'/></interface>
    <interface type='vhostuser'><mac address='52:54:00:11:22:44'/><source type='unix' path='/run/vh.sock' mode='client'/></interface>
    <hostdev mode='subsystem' type='pci'><source><address domain='0' bus='1' slot='0' function='0'/></source></hostdev>
    <filesystem type='mount'><source dir='/srv/share'/><target dir='share'/></filesystem>
    <graphics type='vnc' port='-1' listen='0.0.0.0'/>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/x.agent'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>
    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>
    <vsock model='virtio'><cid auto='no' address='3'/></vsock>
    <video><model type='virtio'/></video>
    <memballoon model='virtio'/>
  </devices>
</domain>""" % UUID

PLAN = {"name": "kvmsnap-verify-abcd1234-web1", "uuid": "11111111-2222-3333-4444-555555555555", "original": "web1",
        "snapshot": "kvmsnap-daily_1", "network": None, "nvram": "/w/kvmsnap-verify-abcd1234-web1/nvram.fd",
        "console_log": "/w/kvmsnap-verify-abcd1234-web1/console.log",
        "overlays": {"vda": {"path": "/w/kvmsnap-verify-abcd1234-web1/vda.qcow2",
                             "backing": "/mnt/ds1/.snapshot/kvmsnap-daily_1/web1.img", "format": "raw"},
                     "vdb": {"path": "/w/kvmsnap-verify-abcd1234-web1/vdb.qcow2",
                             "backing": "/mnt/ds1/.snapshot/kvmsnap-daily_1/data/web1-b.qcow2", "format": "qcow2"}}}


def _copy(**plan):
    out = vx.copy_xml(SAVED, dict(PLAN, **plan))
    return ET.fromstring(out["xml"]), out["notes"], out["xml"]


def test_copy_gets_a_new_identity_and_destroys_itself_on_any_stop():
    root, _notes, text = _copy()
    assert root.findtext("name") == PLAN["name"] and root.findtext("uuid") == PLAN["uuid"]
    assert UUID not in text and "<title>" not in text and "<metadata" not in text and "<genid" not in text
    assert "verify copy of web1 from snapshot kvmsnap-daily_1" in root.findtext("description")
    assert [root.findtext(t) for t in ("on_poweroff", "on_reboot", "on_crash")] == ["destroy"] * 3
    assert root.find("memoryBacking") is None and root.find("seclabel") is None


def test_copy_disks_are_overlays_on_the_snapshot_images_never_relabelled():
    root, notes, _text = _copy()
    disks = {d.find("target").get("dev"): d for d in root.iter("disk")}
    for dev, fmt in (("vda", "raw"), ("vdb", "qcow2")):
        disk = disks[dev]
        assert disk.find("driver").get("type") == "qcow2"
        assert disk.find("source").get("file") == PLAN["overlays"][dev]["path"]
        back = disk.findall("backingStore")
        assert len(back) == 1 and back[0].find("format").get("type") == fmt
        assert back[0].find("source").get("file") == PLAN["overlays"][dev]["backing"]
        sec = back[0].find("source/seclabel")
        assert sec.get("model") == "dac" and sec.get("relabel") == "no"
        assert back[0].find("backingStore") is not None and back[0].find("backingStore").get("type") is None
        assert disk.find("shareable") is None
    # the live datastore's base image is nowhere in the copy
    assert "/mnt/ds1/base.img" not in ET.tostring(root, encoding="unicode")
    assert disks["hdc"].find("source") is None and "<disk hdc device=cdrom> media ejected" in notes


def test_copy_has_no_network_host_device_share_or_listener():
    root, notes, text = _copy()
    devices = root.find("devices")
    tags = [c.tag for c in devices]
    for gone in ("interface", "hostdev", "filesystem", "graphics", "tpm", "vsock", "console"):
        assert gone not in tags, gone
    assert "52:54:00:11:22:33" not in text and "br0" not in text and "/run/vh.sock" not in text
    assert "<interface type=bridge> left out: no network (kvmsnap_verify_network not set)" in notes
    assert "<hostdev> left out: host device passthrough" in notes
    assert "<filesystem> left out: host directory share" in notes
    assert "<graphics> left out: a display listener on the host" in notes
    assert "video" in tags and "memballoon" in tags and "emulator" in tags


def test_copy_on_the_isolated_network_gets_new_macs():
    root, notes, text = _copy(network="verifynet")
    ifaces = root.find("devices").findall("interface")
    assert len(ifaces) == 2 and all(i.get("type") == "network" for i in ifaces)
    assert all(i.find("source").get("network") == "verifynet" for i in ifaces)
    macs = [i.find("mac").get("address") for i in ifaces]
    assert all(m.startswith("52:54:00:") for m in macs) and "52:54:00:11:22:33" not in macs
    assert "52:54:00:11:22:44" not in macs and "br0" not in text


def test_copy_console_agent_and_nvram_live_in_its_own_dir():
    root, notes, _text = _copy()
    serials = root.find("devices").findall("serial")
    assert len(serials) == 1 and serials[0].get("type") == "file"
    assert serials[0].find("source").get("path") == PLAN["console_log"]
    chans = root.find("devices").findall("channel")
    assert len(chans) == 1 and chans[0].find("target").get("name") == "org.qemu.guest_agent.0"
    assert chans[0].find("source") is None  # libvirt picks the socket path
    assert root.findtext("os/nvram") == PLAN["nvram"]
    root2, notes2, _text2 = _copy(nvram=None)
    assert root2.find("os/nvram") is None and any("<nvram> not copied" in n for n in notes2)


def test_copy_refuses_a_disk_without_overlay_and_paths_outside():
    with pytest.raises(vx.VerifyXmlError, match="<disk vdb> has no overlay in the snapshot"):
        vx.copy_xml(SAVED, dict(PLAN, overlays={"vda": PLAN["overlays"]["vda"]}))
    _root, _notes, text = _copy()
    copy_dir = "/w/kvmsnap-verify-abcd1234-web1"
    assert vx.copy_paths_problems(text, copy_dir, ["/mnt/ds1/.snapshot/kvmsnap-daily_1"], ["/usr/share/OVMF"]) == []
    problems = vx.copy_paths_problems(text, copy_dir, ["/mnt/ds1/.snapshot/other"], [])
    assert any("backing image /mnt/ds1/.snapshot/kvmsnap-daily_1/web1.img resolves outside" in p for p in problems)
    assert any("<loader> /usr/share/OVMF/OVMF_CODE.fd resolves outside" in p for p in problems)
    live = text.replace(PLAN["overlays"]["vda"]["path"], "/mnt/ds1/web1.img")
    assert any("disk /mnt/ds1/web1.img resolves outside" in p
               for p in vx.copy_paths_problems(live, copy_dir, ["/mnt/ds1/.snapshot/kvmsnap-daily_1"], ["/usr"]))


def test_disk_plan_san_and_unknown_disks():
    plan = vx.disk_plan(SAVED)
    assert [(d["target"], d["format"]) for d in plan["disks"]] == [("vda", "raw"), ("vdb", "qcow2")]
    assert plan["san"] == [] and plan["refused"] == []
    san = SAVED.replace("<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/mnt/ds1/web1.img'/>",
                        "<disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/mapper/3600a'/>")
    assert "a block device (SAN LUN)" in vx.disk_plan(san)["san"][0]
    odd = SAVED.replace("type='raw'/><source file='/mnt/ds1/web1.img'/>", "type='vmdk'/><source file='/mnt/ds1/web1.img'/>")
    assert "format vmdk; allowed: raw, qcow2" in vx.disk_plan(odd)["refused"][0]
    assert vx.memory_mib(SAVED) == 2048


def test_copy_names():
    assert vx.copy_name("web 1/x", "abcd1234") == "kvmsnap-verify-abcd1234-web_1_x"
    assert len(vx.copy_name("v" * 200, "abcd1234")) == vx.MAX_NAME
    assert vx.is_copy_name("kvmsnap-verify-x") and not vx.is_copy_name("web1")


# ---------------------------------------------------------------- parallel sizing
def test_parallel_is_bounded_by_the_request_and_the_memory():
    assert copy_cost_mib(1024) == 1088 and copy_cost_mib(128) == 192
    p = plan_parallel(4, [1024] * 10, 64000, 1024)
    assert p["chosen"] == 4 and p["reason"] == "kvmsnap_verify_parallel=4"
    p = plan_parallel(8, [4096] * 10, 14000, 1024)  # 12976 MiB budget, 4352 MiB per copy
    assert p["chosen"] == 2 and p["budget_mib"] == 12976 and "memory: 2 copies of up to 4352 MiB" in p["reason"]
    p = plan_parallel(2, [512, 64000], 8000, 1024)
    assert p["too_big"] == [1] and p["chosen"] == 1
    p = plan_parallel(2, [64000], 8000, 1024)
    assert p["chosen"] == 0 and "no copy fits into 6976 MiB" in p["reason"]
    p = plan_parallel(3, [512, 512], None, 1024)
    assert p["chosen"] == 2 and "unknown" in p["reason"]
    assert plan_parallel(2, [], 1000, 0)["chosen"] == 0


def test_work_dir_rules(tmp_path):
    with pytest.raises(VerifyBootError, match="work_dir: '/'"):
        check_work_dir("/", [])
    with pytest.raises(VerifyBootError, match="overlaps datastore /mnt/ds1"):
        check_work_dir("/mnt/ds1/verify", ["/mnt/ds1"])
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    with pytest.raises(VerifyBootError, match="which QEMU's user cannot enter"):
        check_work_dir(str(private / "verify"), [])
    tmp_path.chmod(0o755)
    check_work_dir(str(tmp_path / "verify"), ["/mnt/ds1"])


# ---------------------------------------------------------------- verified token, catalog, settings
def test_verified_token_is_added_replaced_and_kept():
    base = build_comment("daily", "r1", "kvm1", "nightly", state="good", consistency="suspended")
    once = verified_comment(base, "20260101T030000Z")
    assert once == ("kvmsnap:v1 policy=daily run=r1 host=kvm1 state=good consistency=suspended "
                    "verified=20260101T030000Z | nightly")
    twice = verified_comment(once, "20260102T030000Z")
    assert twice.count("verified=") == 1 and "verified=20260102T030000Z" in twice
    assert parse_comment(twice)["verified"] == "20260102T030000Z" and parse_comment(base)["verified"] is None
    assert "verified=20260102T030000Z" in restate_comment(twice, "good", "filesystem")
    with pytest.raises(SnapshotNameError, match="not a good backup"):
        verified_comment(build_comment("daily", "r1", state="pending"), "20260101T030000Z")
    with pytest.raises(SnapshotNameError, match="no kvmsnap metadata"):
        verified_comment("hourly snapshot", "20260101T030000Z")
    with pytest.raises(SnapshotNameError, match="verified"):
        build_comment("daily", "r1", state="good", verified="yesterday")
    assert parse_comment("kvmsnap:v1 policy=daily run=r state=good verified=bogus")["verified"] is None


def _records(verified):
    def snap(name, t, vol, v):
        meta = {"policy": "daily", "run": "r%d" % t, "host": "h", "state": "good", "consistency": "suspended",
                "verified": v}
        return {"name": name, "svm": "svm1", "volume": vol, "create_time": t, "state": "valid", "kvmsnap": meta}
    snaps = []
    for i, (name, vols) in enumerate((("kvmsnap-daily_1", verified.get(1, {})), ("kvmsnap-daily_2", verified.get(2, {})),
                                      ("kvmsnap-daily_3", verified.get(3, {})))):
        for vol in ("vol1", "vol2"):
            snaps.append(snap(name, i + 1, vol, vols.get(vol)))
    return build_catalog([{"item": "c1", "snapshots": snaps}], ["c1:svm1:vol1", "c1:svm1:vol2"])


def test_latest_verified_picks_the_newest_set_verified_on_every_volume():
    t = "20260102T030000Z"
    records = _records({1: {"vol1": t, "vol2": t}, 2: {"vol1": t, "vol2": t}, 3: {"vol1": t}})
    by = {r["name"]: r["verified"] for r in records}
    assert by == {"kvmsnap-daily_1": t, "kvmsnap-daily_2": t, "kvmsnap-daily_3": None}
    spec = {"kind": "latest_verified", "value": "latest_verified"}
    assert select(records, spec)["name"] == "kvmsnap-daily_2"
    assert select(records, {"kind": "latest", "value": "latest"})["name"] == "kvmsnap-daily_3"
    # with the VMs each set protected: the newest verified one that protected them all
    protected = {"kvmsnap-daily_1": [{"name": "db1", "snapshot": "kvmsnap-daily_1", "run_id": "r1"}],
                 "kvmsnap-daily_2": [{"name": "web1", "snapshot": "kvmsnap-daily_2", "run_id": "r2"}]}
    assert select(records, spec, protected, ["db1"])["name"] == "kvmsnap-daily_1"
    with pytest.raises(CatalogError, match="none of the 3 good backup.s. on every needed volume was verified"):
        select(_records({}), spec)


def test_settings_of_the_verify_and_latest_verified():
    ctrl = {"c1": {"ontap_hostname": "10.0.0.1", "ontap_username": "u", "has_password": True}}
    ds = [{"path": "/ds1", "controller": "c1", "svm": "svm1", "volume": "vol1"}]
    s = resolve({"kvmsnap_datastores": ds, "kvmsnap_verify_command": "systemctl is-system-running",
                 "kvmsnap_restore_snapshot": "latest_verified", "kvmsnap_restore_vms": "all"}, {}, "verify", ctrl)
    assert s["verify_command"] == ["/bin/sh", "-c", "systemctl is-system-running"]
    assert s["verify_vms"] == "all" and s["verify_snapshot"]["kind"] == "latest"
    assert s["restore_snapshot"]["kind"] == "latest_verified" and s["verify_parallel"] == 2
    assert s["verify_network"] is None and s["verify_dir"] == "/var/lib/kvmsnap-verify"
    for kw, match in (({"kvmsnap_verify_parallel": 0}, "kvmsnap_verify_parallel: 0 is out of range"),
                      ({"kvmsnap_verify_network": "a b"}, "kvmsnap_verify_network: 'a b'; allowed: the name of an "
                                                          "isolated libvirt network"),
                      ({"kvmsnap_verify_command": [1]}, "kvmsnap_verify_command: allowed"),
                      ({"kvmsnap_verify_dir": "rel"}, "kvmsnap_verify_dir"),
                      ({"kvmsnap_verify_boot_marker": "("}, "kvmsnap_verify_boot_marker: '\\(' is not a regular"),
                      ({"kvmsnap_verify_snapshot": "[?"}, "kvmsnap_verify_snapshot: '\\[\\?' is neither")):
        with pytest.raises(SettingsError, match=match):
            resolve(dict({"kvmsnap_datastores": ds}, **kw), {}, "verify", ctrl)


def test_outcome_marks_only_when_every_vm_passed():
    snap = {"name": "s1", "volumes": ["c1:svm1:vol1", "c2:svm2:vol9", "c1:svm1:vol2"]}
    assert _verify_outcome.marks(snap) == [{"controller": "c1", "volumes": ["svm1:vol1", "svm1:vol2"]},
                                           {"controller": "c2", "volumes": ["svm2:vol9"]}]
    ok = {"name": "web1", "verified": True, "copy": "kvmsnap-verify-x-web1", "agent_seconds": 3.2,
          "check": {"rc": 0, "stdout": "running\n"}}
    out = _verify_outcome.outcome({"h1": {"vms": [ok]}}, {"h1": {"manifests": [{}]}}, snap)
    assert out["verified"] and out["status"] == "ok"
    assert out["summary"] == ["OK web1 on h1: booted as kvmsnap-verify-x-web1, agent after 3.2s, check rc=0 "
                              "output 'running'"]
    san = {"name": "db1", "verified": False, "reason": "not verified (SAN): <disk sda>: a block device (SAN LUN)"}
    out = _verify_outcome.outcome({"h1": {"vms": [ok, san]}}, {}, snap)
    assert not out["verified"] and out["not_verified"] == [{"host": "h1", "vm": "db1", "reason": san["reason"]}]
    out = _verify_outcome.outcome({"h1": {"vms": [ok]}}, {"h1": {"invalid": [{"uuid": "u1", "error": "bad sig"}]}},
                                  snap)
    assert not out["verified"] and "manifest refused: bad sig" in out["summary"][-1]
    out = _verify_outcome.outcome({"h1": {"failed": True, "msg": "locked"}}, {}, snap, ["h2"])
    assert not out["verified"] and out["errors"] == ["h2: host failed or unreachable", "h1: locked"]
    assert not _verify_outcome.outcome({}, {}, snap)["verified"]
    assert _verify_outcome.vm_inputs([{"vm": {"name": "a", "uuid": "u"}, "domain_xml_text": "<x/>",
                                       "nvram_file": None}]) == [{"name": "a", "uuid": "u", "xml": "<x/>",
                                                                  "nvram_file": None}]


def test_select_snapshot_names_the_verify_variable_in_a_verify_run():
    from ansible.errors import AnsibleFilterError

    from ansible_collections.kvmsnap.core.plugins.filter.roles import select_snapshot
    records = _records({})
    with pytest.raises(AnsibleFilterError) as err:
        select_snapshot(records, {"kind": "name", "value": "nope"}, None, None, "verify")
    assert str(err.value).startswith("kvmsnap verify pre-flight: kvmsnap_verify_snapshot: snapshot 'nope' exists on "
                                     "none of the volumes")
    assert "kvmsnap_restore_snapshot" not in str(err.value)
    with pytest.raises(AnsibleFilterError, match="^kvmsnap restore pre-flight: kvmsnap_restore_snapshot=latest_verified"):
        select_snapshot(records, {"kind": "latest_verified", "value": "latest_verified"})
