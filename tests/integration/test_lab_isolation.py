"""The lab leaves the host it runs on untouched: its own libvirtd (tests/lab/labd), never /etc/libvirt or the host's.

A throwaway lab (its own directory, daemons and mount namespace) goes through everything the tests do to a daemon:
start, a minimal guest's lifecycle, kill -9 of its libvirtd and a restart through the tool, stop. Every file under
/etc/libvirt hashes the same before and after, and the host's libvirtd (if one runs) keeps its pid. The guest's
QEMU runs as libvirt-qemu: the lab's libvirtd has the stock security settings.
"""

from __future__ import annotations

import os
import pwd
import signal
import tempfile
from pathlib import Path

import guestlab
import pytest
from guestlab import labd

pytestmark = [pytest.mark.needs_libvirtd]


def _qemu_uid(dom) -> int:
    name = dom.name()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmdline = Path("/proc/%s/cmdline" % p).read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and b"qemu-system" in cmdline[0] and ("guest=%s," % name).encode() in b" ".join(cmdline):
            return os.stat("/proc/%s" % p).st_uid
    raise AssertionError("no QEMU process for %s" % name)


@pytest.fixture
def own_lab():
    if os.geteuid() != 0:
        pytest.skip("the lab's libvirtd runs as root (QEMU as libvirt-qemu, stock settings); run the tests as root")
    # short path: the daemons' unix sockets live under it (108-byte limit)
    base = Path(tempfile.mkdtemp(prefix="iso-", dir=labd.prepare_tmp()))
    try:
        yield base
    finally:
        labd.remove(base)


def test_the_lab_leaves_etc_libvirt_and_the_host_daemon_untouched(own_lab):
    import libvirt
    before = labd.tree_digest(Path("/etc/libvirt"))
    host_pids = labd.host_libvirtd_pids()

    uri = labd.start(own_lab)
    assert uri == "qemu:///system?socket=%s/run/libvirt/libvirt-sock" % own_lab
    first = labd.pid_of("libvirtd", own_lab)
    assert first and labd.pid_of("virtlogd", own_lab)
    assert labd.start(own_lab) == uri and labd.pid_of("libvirtd", own_lab) == first  # idempotent

    conn = libvirt.open(uri)
    try:
        dom = guestlab.define_minimal_guest(conn, "%siso1" % guestlab.run_prefix(), str(own_lab / "disks"))
        assert dom.isActive()
        assert _qemu_uid(dom) == pwd.getpwnam("libvirt-qemu").pw_uid, "QEMU does not run as libvirt-qemu"
    finally:
        conn.close()

    os.kill(first, signal.SIGKILL)  # the LAB's daemon, by its pid file
    labd.start(own_lab)
    second = labd.pid_of("libvirtd", own_lab)
    assert second not in (None, first)
    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByName("%siso1" % guestlab.run_prefix())
        assert dom.isActive(), "the guest did not survive the lab daemon's restart"
        guestlab.destroy_and_undefine(dom)
    finally:
        conn.close()

    ns = os.readlink("/proc/%d/ns/mnt" % second)
    assert sorted(labd.stop(own_lab)) == ["libvirtd", "virtlogd"]
    assert labd.pid_of("libvirtd", own_lab) is None and labd.pid_of("virtlogd", own_lab) is None
    assert labd._pids_in_namespace(ns) == [], "processes of the lab's namespace outlived labd stop"

    assert labd.changed_files(before, labd.tree_digest(Path("/etc/libvirt"))) == [], "the lab changed /etc/libvirt"
    assert labd.host_libvirtd_pids() == host_pids, "the host's libvirtd was restarted or stopped"
