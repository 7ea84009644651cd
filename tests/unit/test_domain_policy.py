"""The allow-list policy for saved domain XML (docs/security.md): many small cases, refused and accepted.

The XML the lab's own guests produce (minimal boot-sector guests, real guests with a console log file and the
guest-agent channel) must pass; anything that reaches host resources is refused or rewritten, and each entry
names the element and the reason.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _domain_policy as dp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
from guestlab.build import GuestAssets
from guestlab.domain import guest_xml, minimal_guest_xml

EMU = "/usr/bin/qemu-system-x86_64"
HOST = {"emulators": {"x86_64": EMU}, "host_arch": "x86_64", "firmware_dirs": list(dp.FIRMWARE_DIRS),
        "channel_dir": dp.CHANNEL_DIR, "nvram_dir": dp.NVRAM_DIR}
UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"


@pytest.fixture
def ds(tmp_path):
    d = tmp_path / "ds1"
    d.mkdir()
    return str(d)


def dom(ds, devices="", os_extra="", top="", ns="", disk_type="file", disk_src=None):
    src = disk_src or os.path.join(ds, "web1.img")
    attr = "dev" if disk_type == "block" else "file"
    return ("<domain type='kvm'%s><name>web1</name><uuid>%s</uuid><memory>1024</memory>"
            "<os><type arch='x86_64' machine='pc'>hvm</type>%s</os>%s<devices><emulator>%s</emulator>"
            "<disk type='%s' device='disk'><driver name='qemu' type='raw'/><source %s='%s'/><target dev='vda'/></disk>"
            "%s</devices></domain>" % (ns, UUID, os_extra, top, EMU, disk_type, attr, src, devices))


def refused(xml, allowed, host=None):
    return dp.check(xml, allowed, host or HOST)["refused"]


# ---- accepted: what the lab and ordinary VMs produce ---------------------------------------------------------


def test_minimal_lab_guest_passes_unchanged(ds):
    xml = minimal_guest_xml("kvs-min1", os.path.join(ds, "kvs-min1.img"), dom_type="kvm")
    res = dp.check(xml, [ds], HOST)
    assert res == {"xml": xml, "rewritten": [], "refused": []}


def test_minimal_lab_guest_with_agent_channel_passes(ds):
    xml = minimal_guest_xml("kvs-min2", os.path.join(ds, "kvs-min2.img"), dom_type="qemu", with_agent=True)
    assert dp.check(xml, [ds], HOST)["refused"] == [] and dp.check(xml, [ds], HOST)["rewritten"] == []


def test_real_lab_guest_passes_with_its_console_file_made_a_pty(ds, tmp_path):
    kdir = tmp_path / "cache"
    kdir.mkdir()
    assets = GuestAssets(kernel=str(kdir / "vmlinuz"), initrd=str(kdir / "initrd.img"))
    xml = guest_xml("kvs-real1", os.path.join(ds, "kvs-real1.qcow2"), assets, console_log=str(tmp_path / "c.log"))
    res = dp.check(xml, [ds, str(kdir)], HOST)
    assert res["refused"] == []
    assert len(res["rewritten"]) == 1 and res["rewritten"][0].startswith("<serial 0>: type='file'")
    assert "c.log" not in res["xml"] and "type=\"pty\"" in res["xml"]
    assert "org.qemu.guest_agent.0" in res["xml"]  # the agent channel stays


def test_direct_kernel_boot_only_from_the_hosts_boot_dirs(ds, tmp_path):
    kdir = str(tmp_path / "boot")
    xml = dom(ds, os_extra="<kernel>%s/vmlinuz</kernel><initrd>%s/initrd</initrd>" % (kdir, kdir))
    assert [r.split(":", maxsplit=1)[0] for r in refused(xml, [ds])] == ["<os><kernel>", "<os><initrd>"]
    assert refused(xml, [ds], dict(HOST, firmware_dirs=list(dp.FIRMWARE_DIRS) + [kdir])) == []


def test_live_xml_of_a_running_guest_passes(ds):
    live = dom(ds, devices=(
        "<serial type='pty'><source path='/dev/pts/3'/><target port='0'/><alias name='serial0'/></serial>"
        "<console type='pty' tty='/dev/pts/3'><source path='/dev/pts/3'/><target type='serial' port='0'/></console>"
        "<channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-4-web1/"
        "org.qemu.guest_agent.0'/><target type='virtio' name='org.qemu.guest_agent.0' state='connected'/></channel>"
        "<interface type='network'><source network='default'/><model type='virtio'/><driver name='vhost'/></interface>"
        "<graphics type='vnc' port='-1' autoport='yes'><listen type='address' address='127.0.0.1'/></graphics>"
        "<video><model type='virtio'/></video><input type='tablet' bus='usb'/><memballoon model='virtio'/>"
        "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>"
        "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm><controller type='usb' model='none'/>"
        "<watchdog model='i6300esb' action='reset'/><panic model='isa'/>"),
        top="<seclabel type='dynamic' model='dac' relabel='yes'/>")
    assert dp.check(live, [ds], HOST) == {"xml": live, "rewritten": [], "refused": []}


def test_virt_install_style_desktop_devices_pass(ds):
    xml = dom(ds, devices=(
        "<channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>"
        "<graphics type='spice' autoport='yes'><listen type='address'/><image compression='off'/></graphics>"
        "<sound model='ich9'/><audio id='1' type='spice'/><video><model type='qxl'/></video>"
        "<redirdev bus='usb' type='spicevmc'/><redirdev bus='usb' type='spicevmc'/>"
        "<interface type='user'><backend type='passt'/><model type='virtio'/></interface>"
        "<input type='mouse' bus='ps2'/><input type='keyboard' bus='ps2'/><console type='pty'/>"),
        top="<seclabel type='none' model='none'/>")
    assert dp.check(xml, [ds], HOST) == {"xml": xml, "rewritten": [], "refused": []}


def test_uefi_loader_and_nvram_in_host_dirs_pass(ds):
    xml = dom(ds, os_extra="<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>"
                           "<nvram template='/usr/share/OVMF/OVMF_VARS.fd'>/var/lib/libvirt/qemu/nvram/web1_VARS.fd"
                           "</nvram>")
    assert refused(xml, [ds]) == []
    assert refused(dom(ds, os_extra="<nvram>%s/web1_VARS.fd</nvram>" % ds), [ds]) == []


def test_block_disk_inside_allowed_path_passes(ds):
    assert refused(dom(ds, disk_type="block"), [ds]) == []


def test_cdrom_without_media_passes(ds):
    assert refused(dom(ds, devices="<disk type='file' device='cdrom'><target dev='hdc'/><readonly/></disk>"), [ds]) == []


def test_metadata_of_other_namespaces_passes(ds):
    xml = dom(ds, top="<metadata><app:info xmlns:app='http://example.org/app'>x</app:info></metadata>")
    assert refused(xml, [ds]) == []


# ---- the emulator ----------------------------------------------------------------------------------------------


def test_foreign_emulator_is_replaced_by_the_hosts(ds):
    xml = dom(ds).replace(EMU, "/some/script")
    res = dp.check(xml, [ds], HOST)
    assert res["refused"] == []
    assert res["rewritten"] == ["<emulator>: /some/script is not the host's emulator; replaced by %s" % EMU]
    assert "/some/script" not in res["xml"] and EMU in res["xml"]


def test_emulator_of_an_arch_the_host_cannot_run_is_refused(ds):
    xml = dom(ds).replace("arch='x86_64'", "arch='s390x'").replace(EMU, "/some/script")
    assert any(r.startswith("<emulator>: /some/script is not the host's emulator") for r in refused(xml, [ds]))


# ---- character devices -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, chr_xml", [
    ("serial", "<serial type='file'><source path='/etc/important'/><target port='0'/></serial>"),
    ("serial", "<serial type='pipe'><source path='/tmp/p'/><target port='0'/></serial>"),
    ("serial", "<serial type='dev'><source path='/dev/ttyS0'/><target port='0'/></serial>"),
    ("serial", "<serial type='tcp'><source mode='connect' host='10.0.0.1' service='22'/><target port='0'/></serial>"),
    ("serial", "<serial type='udp'><source mode='connect' host='10.0.0.1' service='53'/><target port='0'/></serial>"),
    ("serial", "<serial type='unix'><source mode='connect' path='/run/docker.sock'/><target port='0'/></serial>"),
    ("serial", "<serial type='stdio'><target port='0'/></serial>"),
    ("serial", "<serial type='pty'><log file='/etc/shadow' append='off'/><target port='0'/></serial>"),
    ("console", "<console type='file'><source path='/root/.bashrc'/><target type='serial' port='0'/></console>"),
    ("parallel", "<parallel type='file'><source path='/etc/x'/><target port='0'/></parallel>"),
    ("channel", "<channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/x'/>"
                "<log file='/etc/shadow'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"),
    ("channel", "<channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/chan'/>"
                "<target type='virtio' name='org.example.other'/></channel>"),
])
def test_unsafe_character_devices_become_ptys(ds, kind, chr_xml):
    res = dp.check(dom(ds, devices=chr_xml), [ds], HOST)
    assert res["refused"] == [] and len(res["rewritten"]) == 1, res
    assert res["rewritten"][0].startswith("<%s" % kind) and "rewritten to type='pty'" in res["rewritten"][0]
    again = dp.check(res["xml"], [ds], HOST)
    assert again["rewritten"] == [] and again["refused"] == []  # the result is itself acceptable
    devices = res["xml"].split("</disk>")[-1]
    for bad in ("/etc/", "/tmp/", "/root/", "/run/", "10.0.0.1", "log file", "/dev/ttyS0", "/var/lib"):
        assert bad not in devices


def test_agent_channel_with_a_foreign_socket_path_gets_libvirts_own(ds):
    chan = ("<channel type='unix'><source mode='bind' path='/run/evil.sock'/>"
            "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>")
    res = dp.check(dom(ds, devices=chan), [ds], HOST)
    assert res["refused"] == [] and res["rewritten"] == [
        "<channel org.qemu.guest_agent.0>: path=/run/evil.sock removed (libvirt puts the guest agent socket in "
        "/var/lib/libvirt/qemu/channel)"]
    assert "evil" not in res["xml"] and "type=\"unix\"" in res["xml"]
    assert dp.check(res["xml"], [ds], HOST)["rewritten"] == []


def test_guestfwd_channel_is_refused(ds):
    xml = dom(ds, devices="<channel type='tcp'><source mode='connect' host='127.0.0.1' service='22'/>"
                          "<target type='guestfwd' address='10.0.2.1' port='4600'/></channel>")
    assert refused(xml, [ds])[0].startswith("<channel") and "guestfwd" in refused(xml, [ds])[0]


# ---- refused elements ------------------------------------------------------------------------------------------

QEMU_NS = " xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'"


@pytest.mark.parametrize("top, name", [
    ("<qemu:commandline><qemu:arg value='-evil'/></qemu:commandline>", "<qemu:commandline>"),
    ("<qemu:capabilities><qemu:add capability='x'/></qemu:capabilities>", "<qemu:capabilities>"),
    ("<qemu:override><qemu:device alias='x'/></qemu:override>", "<qemu:override>"),
])
def test_qemu_namespace_is_refused(ds, top, name):
    out = refused(dom(ds, top=top, ns=QEMU_NS), [ds])
    assert len(out) == 1 and out[0].startswith(name + ":") and "not allowed" in out[0]


@pytest.mark.parametrize("device, where, why", [
    ("<hostdev mode='subsystem' type='pci'><source><address bus='0x01'/></source></hostdev>", "<hostdev",
     "host device passthrough"),
    ("<filesystem type='mount'><driver type='virtiofs'/><binary path='/tmp/evil'/><source dir='/'/>"
     "<target dir='root'/></filesystem>", "<filesystem", "host directory passthrough"),
    ("<smartcard mode='passthrough' type='tcp'/>", "<smartcard", "smartcard"),
    ("<redirdev bus='usb' type='tcp'><source mode='connect' host='x' service='1'/></redirdev>", "<redirdev", "USB"),
    ("<interface type='user'><backend type='passt' logFile='/etc/shadow'/></interface>", "<interface", "logFile"),
    ("<shmem name='x'><model type='ivshmem-plain'/></shmem>", "<shmem", "shared memory"),
    ("<memory model='nvdimm'><source><path>/etc/shadow</path></source></memory>", "<memory", "memory backend"),
    ("<lease><lockspace>x</lockspace><key>k</key><target path='/etc/x'/></lease>", "<lease", "lock-space"),
    ("<interface type='vhostuser'><source type='unix' path='/tmp/s' mode='client'/></interface>", "<interface",
     "type='vhostuser'"),
    ("<interface type='ethernet'><script path='/tmp/evil.sh'/></interface>", "<interface",
     "host script"),
    ("<interface type='network'><source network='default'/><backend tap='/dev/net/tun' vhost='/tmp/v'/></interface>",
     "<interface", "tap, vhost"),
    ("<interface type='hostdev'/>", "<interface", "type='hostdev'"),
    ("<graphics type='vnc' socket='/tmp/vnc.sock'/>", "<graphics", "socket"),
    ("<graphics type='egl-headless'><gl rendernode='/dev/dri/renderD128'/></graphics>", "<graphics", "egl-headless"),
    ("<input type='evdev'><source dev='/dev/input/event0'/></input>", "<input", "host device"),
    ("<input type='passthrough' bus='virtio'><source evdev='/dev/input/event1'/></input>", "<input", "host device"),
    ("<rng model='virtio'><backend model='random'>/etc/shadow</backend></rng>", "<rng", "not a host random source"),
    ("<tpm model='tpm-tis'><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm>", "<tpm",
     "passthrough"),
    ("<video><model type='virtio'/><driver name='vhostuser'/></video>", "<video", "vhost-user"),
    ("<audio id='1' type='file' path='/etc/x'/>", "<audio", "host audio"),
    ("<sprocket/>", "<sprocket", "not on the allow-list"),
])
def test_devices_that_reach_the_host_are_refused(ds, device, where, why):
    out = refused(dom(ds, devices=device), [ds])
    assert out, "accepted: %s" % device
    assert any(r.startswith(where) and why in r for r in out), out


@pytest.mark.parametrize("top", ["<seclabel type='none'/>", "<seclabel type='none' model='dac'/>",
                                 "<seclabel type='static' model='dac'><label>0:0</label></seclabel>"])
def test_seclabel_that_lifts_confinement_is_refused(ds, top):
    assert refused(dom(ds, top=top), [ds])[0].startswith("<seclabel")


# ---- paths ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, where", [
    ({"disk_src": "/etc/shadow"}, "<disk vda> <source file>: path /etc/shadow is outside allowed_paths"),
    ({"disk_src": "/"}, "<disk vda> <source file>: path / is outside allowed_paths"),
    ({"disk_type": "block", "disk_src": "/dev/sda"}, "<disk vda> <source dev>: path /dev/sda is outside"),
    ({"os_extra": "<loader>/tmp/evil.fd</loader>"}, "<os><loader>: path /tmp/evil.fd is outside"),
    ({"os_extra": "<kernel>/root/vmlinuz</kernel>"}, "<os><kernel>: path /root/vmlinuz is outside"),
    ({"os_extra": "<nvram>/etc/passwd</nvram>"}, "<os><nvram>: path /etc/passwd is outside"),
    ({"os_extra": "<nvram template='/etc/shadow'>/var/lib/libvirt/qemu/nvram/x.fd</nvram>"},
     "<os><nvram template>: template /etc/shadow is outside"),
    ({"os_extra": "<acpi><table type='slic'>/etc/shadow</table></acpi>"}, "<os><acpi><table>: path /etc/shadow"),
])
def test_paths_outside_the_allowed_ones_are_refused(ds, kwargs, where):
    out = refused(dom(ds, **kwargs), [ds])
    assert any(r.startswith(where) for r in out), out


def test_network_volume_and_dir_disks_are_refused(ds):
    for extra, what in (("<disk type='network' device='disk'><source protocol='nbd' name='x'><host name='h'/>"
                         "</source><target dev='vdb'/></disk>", "a network disk (nbd)"),
                        ("<disk type='volume' device='disk'><source pool='p' volume='v'/><target dev='vdb'/></disk>",
                         "not a local file"),
                        ("<disk type='dir' device='disk'><source dir='/'/><target dev='vdb'/></disk>",
                         "not a local file")):
        out = refused(dom(ds, devices=extra), [ds])
        assert len(out) == 1 and out[0].startswith("<disk vdb>") and what in out[0], out


def test_backing_store_outside_and_reservations_are_refused(ds):
    backing = ("<disk type='file' device='disk'><source file='%s/b.qcow2'/><backingStore type='file'>"
               "<source file='/var/lib/other/base.qcow2'/></backingStore><target dev='vdb'/></disk>" % ds)
    assert any("base.qcow2 is outside" in r for r in refused(dom(ds, devices=backing), [ds]))
    resv = ("<disk type='block' device='lun'><source dev='%s/lun'><reservations managed='no'>"
            "<source type='unix' path='/run/x.sock' mode='client'/></reservations></source><target dev='sdb'/></disk>"
            % ds)
    assert any("<reservations>" in r for r in refused(dom(ds, devices=resv), [ds]))


def test_symlinked_component_is_refused(ds, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, os.path.join(ds, "link"))
    assert refused(dom(ds, disk_src=os.path.join(ds, "link", "x.img")), [ds])


def test_no_allowed_paths_means_no_disk(ds):
    assert "none given" in refused(dom(ds), [])[0]


def test_every_problem_is_named_at_once(ds):
    xml = dom(ds, devices="<hostdev/><filesystem/>", top="<qemu:commandline/>", ns=QEMU_NS, disk_src="/etc/x.img")
    out = refused(xml, [ds])
    assert len(out) == 4, out


def test_dtd_is_refused(ds):
    serial = "<serial type='file'><source path='&p;'/></serial>"
    xml = "<!DOCTYPE domain [<!ENTITY p '/etc/shadow'>]>" + dom(ds, devices=serial)
    assert refused(xml, [ds]) == ["<!DOCTYPE>: a DTD or entity declaration is not allowed in a saved domain XML"]


def test_not_a_domain(ds):
    with pytest.raises(dp.PolicyError):
        dp.check("<domain>", [ds], HOST)
    with pytest.raises(dp.PolicyError, match="root <vm>"):
        dp.check("<vm/>", [ds], HOST)


# ---- host facts and other VMs' disks (libvirt's test driver, in process) -----------------------------------------


def test_host_facts_and_disk_users_from_libvirt():
    libvirt = pytest.importorskip("libvirt")
    conn = libvirt.open("test:///default")
    try:
        facts = dp.host_facts(conn)
        assert facts["emulators"] and all(p.startswith("/") for p in facts["emulators"].values())
        users = dp.disk_users(conn, ["/guest/diskimage1", "/nowhere"], None)
        assert users == {"/guest/diskimage1": ["test"]}
        test_uuid = conn.lookupByName("test").UUIDString()
        assert dp.disk_users(conn, ["/guest/diskimage1"], test_uuid) == {}
    finally:
        conn.close()
