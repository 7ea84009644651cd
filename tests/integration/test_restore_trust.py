"""A restore trusts nothing it reads from a snapshot (docs/security.md), through ansible-playbook against the lab.

The lab's libvirtd (tests/lab/labd) with minimal boot-sector guests whose disks live in the ONTAP simulator's
volume. One backup, then the manifest inside ``.snapshot/<name>/.kvmsnap/<uuid>/`` is edited as someone with
write access to the datastore would (hashes fixed up; the signature dropped, forged, or - to reach the checks
behind it - made with the controller's own key). Each edit that the old code restored with "OK":

- ``"datastores": ["/"]`` widening the allowed paths, the VM brought back on a disk outside every datastore;
- ``<emulator>/some/script</emulator>`` that libvirtd ran as root;
- ``<serial type='file'>`` on a host file that QEMU truncated;
- ``disks[0]`` pointing at another running VM's disk, whose live data was rolled back;

is now refused in the pre-flight (before the safety snapshot and before any VM is stopped, in check mode too,
with the VM, the field and the reason in the message) or, for the emulator and the serial port, rewritten to the
host's own emulator and a pty and named in the report.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.playbook_lab import Lab, run_output, sha

from ansible_collections.kvmsnap.core.plugins.module_utils import _manifest_sig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
import guestlab

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]

SNAP = "kvmsnap-daily_trust1"
RUNNING = 1


@pytest.fixture(scope="module")
def lab(libvirt_system, tmp_path_factory):
    base = tmp_path_factory.mktemp("trust")
    lab = Lab(base, libvirt_system)
    lab.prefix = "%strust-" % guestlab.run_prefix()
    try:
        lab.start_sim("s1")
        lab.add_guests(("v", "s1", "vol_ds1"),  # the VM whose manifest is edited
                       ("o", "s1", "vol_ds1"))  # another running VM on the same datastore
        lab.ds1 = lab.datastore("s1", "vol_ds1")
        lab.inv = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("v"), lab.name("o")]}},
                                {"c1": lab.controller("s1")}, kvmsnap_datastores=[lab.ds1])
        proc = lab.run("backup", lab.inv, {"kvmsnap_snapshot_name": SNAP})
        assert proc.returncode == 0, run_output(proc)
        lab.uuid = lab.conn.lookupByName(lab.name("v")).UUIDString()
        lab.mdir = lab.vol("s1", "vol_ds1") / ".snapshot" / SNAP / ".kvmsnap" / lab.uuid
        _make_writable(lab.mdir)
        lab.pristine = base / "pristine"
        shutil.copytree(lab.mdir, lab.pristine)
        yield lab
    finally:
        lab.close()


def _make_writable(path: Path) -> None:
    """The lab's snapshots are read-only (btrfs ro subvolume or mode bits); an attacker's edit needs them writable."""
    probe = path / ".probe"
    try:
        probe.write_text("x")
        probe.unlink()
    except OSError:
        snap = path.parents[1]
        subprocess.run(["btrfs", "property", "set", "-f", "-ts", str(snap), "ro", "false"], check=True)


@pytest.fixture
def pristine(lab):
    """Each test starts from the manifest the backup wrote."""
    for f in lab.pristine.iterdir():
        shutil.copyfile(f, lab.mdir / f.name)
    yield lab


def key_of(lab) -> str:
    return (lab.base / "manifest.key").read_text().strip()


def tamper(lab, manifest=None, xml=None, signature: str = "controller_key") -> None:
    """Edit the manifest in the snapshot, fix up its hashes; then sign it as SIGNATURE says."""
    man = json.loads((lab.mdir / "manifest.json").read_text())
    text = (lab.mdir / "domain.xml").read_text()
    if xml is not None:
        text = xml(text)
        (lab.mdir / "domain.xml").write_text(text)
    man["domain_xml"]["sha256"] = hashlib.sha256(text.encode()).hexdigest()
    if manifest is not None:
        manifest(man)
    man.pop("signature", None)
    if signature == "controller_key":  # the checks behind the signature, as if the key had leaked
        man["signature"] = _manifest_sig.sign(man, key_of(lab))
    elif signature == "forged":
        man["signature"] = _manifest_sig.sign(man, "0123456789abcdef" * 4)
    (lab.mdir / "manifest.json").write_text(json.dumps(man, indent=2, sort_keys=True) + "\n")


def untouched(lab, before_xml: str, before_id: int) -> None:
    """Refused in the pre-flight: no safety snapshot, the VM still runs, as it was defined."""
    assert lab.snapshots("s1", "vol_ds1") == [SNAP]
    dom = lab.conn.lookupByName(lab.name("v"))
    assert dom.state()[0] == RUNNING and dom.ID() == before_id
    assert dom.XMLDesc(2) == before_xml


def restore(lab, check: bool = False, verbose: str = "", **extra):
    args = {"kvmsnap_restore_vms": [lab.name("v")], "kvmsnap_restore_snapshot": SNAP, "kvmsnap_restore_force": True,
            "kvmsnap_shutdown_timeout": 2, **extra}
    return lab.run("restore", lab.inv, args, check=check, verbose=verbose)


def state_of(lab):
    dom = lab.conn.lookupByName(lab.name("v"))
    return dom.XMLDesc(2), dom.ID()


def test_backup_signs_with_a_key_file_created_on_the_controller(lab):
    key_file = lab.base / "manifest.key"
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    key = key_of(lab)
    assert len(key) == 64 and all(ch in "0123456789abcdefABCDEF" for ch in key)
    man = json.loads((lab.pristine / "manifest.json").read_text())
    assert man["signature"]["alg"] == "hmac-sha256" and man["signature"]["key_id"] == _manifest_sig.key_id(key)
    assert _manifest_sig.verify(man, [key])[0]


def test_unsigned_manifest_is_refused_unless_named(pristine):
    lab = pristine
    before = state_of(lab)
    tamper(lab, signature="none")
    proc = restore(lab)
    assert proc.returncode != 0
    msg = "VM %s: signature: the manifest is not signed; refused" % lab.name("v")
    assert msg in proc.stdout, run_output(proc)
    assert "One or more items failed" not in proc.stdout
    untouched(lab, *before)
    # the override is per VM, by name; check mode runs the same checks and passes them
    ok = restore(lab, check=True, kvmsnap_restore_unsigned_ok=[lab.name("v")])
    assert ok.returncode == 0, run_output(ok)
    assert "would restore %s from %s" % (lab.name("v"), SNAP) in ok.stdout
    untouched(lab, *before)


def test_forged_signature_is_refused(pristine):
    lab = pristine
    before = state_of(lab)
    tamper(lab, manifest=lambda m: m.update(policy="weekly"), signature="forged")
    proc = restore(lab)
    assert proc.returncode != 0
    assert "VM %s: signature: the signature does not verify with the configured key(s)" % lab.name("v") in proc.stdout, \
        run_output(proc)
    untouched(lab, *before)


def test_rotated_key_old_one_still_verifies(pristine):
    lab = pristine
    proc = restore(lab, check=True, verbose="-vvv", kvmsnap_manifest_key="f" * 64,
                   kvmsnap_manifest_keys_old=[key_of(lab)])
    assert proc.returncode == 0, run_output(proc)
    # no key in the output, not even at -vvv (the command line itself is not Ansible's output)
    assert key_of(lab) not in proc.stdout + proc.stderr and "f" * 64 not in proc.stdout + proc.stderr
    refused = restore(lab, check=True, kvmsnap_manifest_key="f" * 64)
    assert refused.returncode != 0 and "does not verify" in refused.stdout, run_output(refused)


def test_datastores_in_the_manifest_do_not_widen_the_allowed_paths(pristine):
    lab = pristine
    before = state_of(lab)
    outside = lab.base / "outside.img"
    shutil.copyfile(lab.disk("v", "s1", "vol_ds1"), outside)
    old_src = str(lab.disk("v", "s1", "vol_ds1"))

    def edit(m):
        m["datastores"] = ["/"]
        m["disks"][0].update(source=str(outside), datastore="/", path=str(outside))

    tamper(lab, manifest=edit, xml=lambda x: x.replace(old_src, str(outside)))
    for check in (True, False):  # check mode runs the same validation
        proc = restore(lab, check=check)
        assert proc.returncode != 0, run_output(proc)
        assert ("VM %s: disks[0].datastore '/' is not one of this host's datastores (%s"
                % (lab.name("v"), lab.ds1["path"])) in proc.stdout, run_output(proc)
        untouched(lab, *before)


def test_another_vms_disk_is_refused(pristine):
    lab = pristine
    before = state_of(lab)
    other = lab.disk("o", "s1", "vol_ds1")
    with open(other, "r+b") as fh:  # live data of the other VM, newer than the snapshot
        fh.seek(4096)
        fh.write(b"live data of the other VM")
    other_sha = sha(other)
    old_src = str(lab.disk("v", "s1", "vol_ds1"))
    tamper(lab, manifest=lambda m: m["disks"][0].update(source=str(other), path="/" + other.name),
           xml=lambda x: x.replace(old_src, str(other)))
    proc = restore(lab)
    assert proc.returncode != 0
    assert ("VM %s: disks[0].source %s is used by VM %s on this host" % (lab.name("v"), other, lab.name("o"))
            in proc.stdout), run_output(proc)
    untouched(lab, *before)
    assert sha(other) == other_sha
    assert lab.conn.lookupByName(lab.name("o")).state()[0] == RUNNING


def test_foreign_emulator_and_serial_file_are_rewritten(pristine):
    lab = pristine
    marker = lab.base / "emulator-ran"
    script = lab.base / "emulator.sh"
    script.write_text("#!/bin/sh\ntouch %s\nexec /usr/bin/qemu-system-x86_64 \"$@\"\n" % marker)
    script.chmod(0o755)
    hostfile = lab.base / "precious.txt"
    hostfile.write_text("host data that QEMU must not truncate\n")
    serial = "<serial type='file'><source path='%s'/><target port='0'/></serial>" % hostfile

    def edit(x):
        import re
        x = re.sub(r"<emulator>[^<]*</emulator>", "<emulator>%s</emulator>" % script, x)
        return x.replace("</devices>", serial + "</devices>")

    tamper(lab, xml=edit)
    proc = restore(lab)
    assert proc.returncode == 0, run_output(proc)
    assert not marker.exists()  # libvirtd never ran the script
    assert hostfile.read_text() == "host data that QEMU must not truncate\n"
    dom = lab.conn.lookupByName(lab.name("v"))
    assert dom.state()[0] == RUNNING
    xml = dom.XMLDesc(2)
    assert str(script) not in xml and str(hostfile) not in xml and "<serial type='pty'>" in xml
    notes = " | ".join(proc.report["notes"])
    assert "VM %s: <emulator>: %s is not the host's emulator; replaced by" % (lab.name("v"), script) in notes, notes
    assert "VM %s: <serial 0>: type='file' path=%s rewritten to type='pty'" % (lab.name("v"), hostfile) in notes, notes
    assert os.path.exists(lab.disk("v", "s1", "vol_ds1"))
