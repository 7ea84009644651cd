"""vm_verify against the lab's libvirtd: interruption, leftovers of a killed run, and the VMs it cannot verify.

The "snapshot" here is a read-only directory <datastore>/.snapshot/<name>/ as an NFS client sees it, with
boot-sector images (cli;hlt: the copy runs, but no agent ever answers), so every case takes seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers.guest_fixtures import SYSTEM_URI
from helpers.playbook_lab import guestlab, sha

pytestmark = [pytest.mark.needs_libvirtd]

SNAP = "kvmsnap-daily_mod1"
MODULE = "ansible_collections.kvmsnap.core.plugins.modules.vm_verify"


@pytest.fixture
def snap(tmp_path, libvirt_system):
    ds = tmp_path / "ds"
    sdir = ds / ".snapshot" / SNAP
    sdir.mkdir(parents=True)
    prefix = "%svmv-" % guestlab.run_prefix()
    vms = {}
    for key, agent in (("agent", True), ("plain", False)):
        name = prefix + key
        image = guestlab.domain.make_boot_sector(str(sdir / ("%s.img" % name)), size=1024 * 1024)
        os.chmod(image, 0o444)
        xml = guestlab.domain.minimal_guest_xml(name, str(ds / ("%s.img" % name)), with_agent=agent)
        uuid = xml.split("<uuid>")[1].split("</uuid>")[0]
        vms[key] = {"name": name, "uuid": uuid, "xml": xml, "image": Path(image)}
    san_xml = vms["plain"]["xml"].replace(prefix + "plain", prefix + "san").replace(
        "<disk type='file'", "<disk type='block'").replace("<source file=", "<source dev=")
    assert "type='block'" in san_xml and "<source dev=" in san_xml
    san_xml = san_xml.replace(vms["plain"]["uuid"], "6b0c1e1e-1111-4a4a-9b9b-000000000001")
    vms["san"] = {"name": prefix + "san", "uuid": "6b0c1e1e-1111-4a4a-9b9b-000000000001", "xml": san_xml}
    yield {"ds": ds, "sdir": sdir, "work": tmp_path / "work", "vms": vms, "prefix": prefix}
    guestlab.cleanup_prefix(libvirt_system, "kvmsnap-verify-")


def _args(s, keys, **kw):
    args = {"uri": SYSTEM_URI, "snapshot": SNAP, "datastores": [str(s["ds"])], "work_dir": str(s["work"]),
            "state_dir": str(s["work"].parent / "state"), "boot_timeout": 120, "parallel": 2,
            "memory_reserve": 0,
            "vms": [{k: v for k, v in s["vms"][key].items() if k in ("name", "uuid", "xml")} for key in keys]}
    args.update(kw)
    return args


def _start(args):
    fh = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=False)}, fh)
    fh.close()
    proc = subprocess.Popen([sys.executable, "-m", MODULE, fh.name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    proc.args_file = fh.name
    return proc


def _copies(conn):
    return [d.name() for d in conn.listAllDomains(0) if d.name().startswith("kvmsnap-verify-")]


def _wait_for_copy(conn, proc, timeout=60):
    """The copy's name once it runs and the module waits for its agent (not while libvirt still starts it)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        names = _copies(conn)
        if names and conn.lookupByName(names[0]).state()[0] == 1:
            time.sleep(1.0)
            return names
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("no copy started")


def _copy_dirs(s):
    return sorted(p.name for p in s["work"].iterdir() if p.name.startswith("kvmsnap-verify-")) if s[
        "work"].exists() else []


def test_sigterm_destroys_the_copies_and_reports_interrupted(snap, libvirt_system):
    digest = sha(snap["vms"]["agent"]["image"])
    proc = _start(_args(snap, ["agent"]))
    try:
        [copy] = _wait_for_copy(libvirt_system, proc)
        assert copy.endswith(snap["vms"]["agent"]["name"]) and _copy_dirs(snap) == [copy]
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        os.unlink(proc.args_file)
    assert time.monotonic() - started < 30
    result = json.loads(out.strip().splitlines()[-1])
    assert result["failed"] and "was interrupted (signal 15); every copy it started was destroyed" in result["msg"]
    assert _copies(libvirt_system) == [] and _copy_dirs(snap) == []
    assert sha(snap["vms"]["agent"]["image"]) == digest


def test_a_killed_run_leaves_what_the_next_run_removes(snap, libvirt_system):
    proc = _start(_args(snap, ["agent"]))
    try:
        [copy] = _wait_for_copy(libvirt_system, proc)
        proc.kill()  # kill -9: no clean-up of its own
        proc.communicate(timeout=30)
    finally:
        os.unlink(proc.args_file)
    assert _copies(libvirt_system) == [copy] and _copy_dirs(snap) == [copy]
    proc = _start(_args(snap, []))
    out, _err = proc.communicate(timeout=120)
    os.unlink(proc.args_file)
    result = json.loads(out.strip().splitlines()[-1])
    assert not result.get("failed"), result
    assert result["cleaned"] == ["domain %s" % copy, "directory %s" % (snap["work"] / copy)]
    assert result["changed"] is True and result["verified"] is False
    assert _copies(libvirt_system) == [] and _copy_dirs(snap) == []


def test_vms_it_cannot_verify_are_reported_with_the_reason(snap, libvirt_system, module_runner):
    res = module_runner("vm_verify", _args(snap, ["agent", "plain", "san"], boot_timeout=3), timeout=120)
    assert not res.failed, res
    by = {v["name"]: v for v in res["vms"]}
    agent, plain, san = (by[snap["vms"][k]["name"]] for k in ("agent", "plain", "san"))
    assert agent["booted"] is False and "did not answer guest-ping within 3s" in agent["reason"]
    assert agent["disks"][0]["backing"] == str(snap["vms"]["agent"]["image"])
    assert plain["copy"] is None and "no guest agent channel and no boot_marker" in plain["reason"]
    assert san["san"] is True and "not verified (SAN)" in san["reason"] and "a block device (SAN LUN)" in san["reason"]
    assert res["verified"] is False and len(res["not_verified"]) == 3
    assert res["parallel"]["chosen"] == 1 and res["parallel"]["requested"] == 2
    assert _copies(libvirt_system) == [] and _copy_dirs(snap) == []
    # a marker that never comes: the console log is searched until the timeout
    res = module_runner("vm_verify", _args(snap, ["plain"], boot_timeout=2, boot_marker="login:"), timeout=120)
    [plain] = res["vms"]
    assert "did not print the boot marker 'login:' within 2s" in plain["reason"] and plain["booted"] is False
    # refused before anything starts: a work dir inside the datastore
    res = module_runner("vm_verify", _args(snap, ["agent"], work_dir=str(snap["ds"] / "w")))
    assert res.failed and "overlaps datastore" in res["msg"]
    # check mode plans only
    res = module_runner("vm_verify", _args(snap, ["agent", "san"]), check_mode=True)
    assert not res.failed and "would boot 1 copy(ies) of snapshot %s" % SNAP in res["msg"]
    assert _copies(libvirt_system) == []
