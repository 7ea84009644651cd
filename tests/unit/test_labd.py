"""tests/lab/guestlab/labd.py: the lab daemon's URI, which pids it may signal, and the /etc/libvirt guard's diff."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))

from guestlab import labd


def test_uri_is_the_lab_socket_unless_the_environment_names_one(tmp_path, monkeypatch):
    monkeypatch.delenv("KVMSNAP_LAB_URI", raising=False)
    monkeypatch.setenv("KVMSNAP_LAB_DIR", str(tmp_path))
    assert labd.uri() == "qemu:///system?socket=%s/run/libvirt/libvirt-sock" % tmp_path
    monkeypatch.setenv("KVMSNAP_LAB_URI", "qemu:///system?socket=/elsewhere/sock")
    assert labd.uri() == "qemu:///system?socket=/elsewhere/sock"
    assert labd.uri(tmp_path) == "qemu:///system?socket=%s/run/libvirt/libvirt-sock" % tmp_path


def test_a_pid_file_never_leads_to_a_process_that_is_not_the_labs(tmp_path):
    # a recycled pid (another program) and a libvirtd-named process in our own namespace (the host's) are refused
    labd.pid_file("libvirtd", tmp_path).write_text("%d\n" % os.getpid())
    assert labd.pid_of("libvirtd", tmp_path) is None
    proc = subprocess.Popen(["sleep", "30"])
    try:
        labd.pid_file("sleep", tmp_path).write_text(str(proc.pid))
        assert labd.pid_of("sleep", tmp_path) is None  # right name, but in our mount namespace: not the lab's
        assert labd.stop_daemon("sleep", tmp_path) is None and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    labd.pid_file("virtlogd", tmp_path).write_text("garbage")
    assert labd.status(tmp_path)["virtlogd"] is None


def test_the_guard_ignores_domains_of_other_test_sessions_only():
    mine = "/etc/libvirt/qemu/kvs-%d-m1.xml" % os.getpid()
    other = "/etc/libvirt/qemu/kvs-1-m1.xml"
    before = {"/etc/libvirt/qemu.conf": "a"}
    after = {"/etc/libvirt/qemu.conf": "b", mine: "x", other: "y"}
    assert labd.changed_files(before, after) == ["/etc/libvirt/qemu.conf", mine]


def test_tree_digest_sees_content_and_symlinks(tmp_path):
    (tmp_path / "a.conf").write_text("x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "l").symlink_to("/nowhere")
    first = labd.tree_digest(tmp_path)
    assert set(first) == {str(tmp_path / "a.conf"), str(tmp_path / "d" / "l")}
    (tmp_path / "a.conf").write_text("y")
    assert labd.changed_files(first, labd.tree_digest(tmp_path)) == [str(tmp_path / "a.conf")]


def test_start_as_another_user_says_root_is_needed(tmp_path, monkeypatch):
    monkeypatch.setattr(labd.os, "geteuid", lambda: 1000)
    with pytest.raises(labd.LabError, match="runs as root"):
        labd.start(tmp_path)
    assert not (tmp_path / "run").exists()  # nothing prepared


def test_host_path_maps_the_daemons_dirs_into_the_lab_dir(tmp_path):
    assert labd.host_path("/run/libvirt/qemu/vm1.pid", tmp_path) == tmp_path / "run/libvirt/qemu/vm1.pid"
    assert labd.host_path("/var/lib/libvirt/qemu/nvram/x.fd", tmp_path) == tmp_path / "lib/libvirt/qemu/nvram/x.fd"
    assert labd.host_path("/var/tmp/disk.img", tmp_path) == Path("/var/tmp/disk.img")
