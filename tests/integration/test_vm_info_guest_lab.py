"""The lab's real guest: boots, its agent answers, the writer appends to /data/log.txt, cleanup."""

from __future__ import annotations

import time

import guestlab
import pytest
from guestlab import labd

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.needs_kvm_guests, pytest.mark.slow]


def test_real_guest_boots_agent_and_writer(real_guest, libvirt_system, tmp_path, capsys):
    guest = real_guest(disk_dir=tmp_path)
    assert guest.name.startswith(guestlab.run_prefix())
    assert guest.boot_seconds is not None and guest.boot_seconds < 60
    assert guestlab.agent_command(guest.dom, "guest-ping") == {}

    first = guest.writer_numbers()
    time.sleep(1.0)
    second = guest.writer_numbers()
    assert second, "the writer wrote nothing to /data/log.txt"
    assert len(second) > len(first), "the writer is not appending"
    assert guestlab.writer_log_gaps(second) == []
    assert second[0] == 1

    rss_kib = 0
    for line in open(f"/proc/{_qemu_pid(guest.name)}/status"):
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
    with capsys.disabled():
        print(f"\n[guest-lab] {guest.name}: agent ready after {guest.boot_seconds:.1f} s, "
              f"{len(second)} lines written, qemu RSS {rss_kib // 1024} MiB, type {guestlab.domain_type()}")

    # guest-fsfreeze really freezes /data: the writer stalls while frozen and continues after the thaw
    assert guestlab.agent_command(guest.dom, "guest-fsfreeze-freeze") >= 1
    try:
        assert guestlab.agent_command(guest.dom, "guest-fsfreeze-status") == "frozen"
        time.sleep(1.0)
    finally:
        guestlab.agent_command(guest.dom, "guest-fsfreeze-thaw")
    after_thaw = guest.writer_numbers()
    assert len(after_thaw) <= len(second) + 3, "the writer kept writing while /data was frozen"
    time.sleep(0.8)
    assert len(guest.writer_numbers()) > len(after_thaw), "the writer did not continue after the thaw"

    # a clean power-off through the agent, then the file system is checked offline
    guestlab.shutdown_guest(guest.dom, timeout=60)
    rc, out = guestlab.fsck_disk(guest.disk_path)
    assert rc == 0, out
    offline = guestlab.parse_writer_log(guestlab.read_disk_file(guest.disk_path))
    assert len(offline) >= len(second)
    assert guestlab.writer_log_gaps(offline) == []


def test_guest_is_cleaned_up_after_failure(real_guest, libvirt_system, tmp_path):
    guest = real_guest(disk_dir=tmp_path, wait=False, transient=False)
    name = guest.name
    guestlab.destroy_and_undefine(guest.dom)
    guestlab.destroy_and_undefine(guest.dom)  # twice: never raises
    assert name not in [d.name() for d in libvirt_system.listAllDomains(0)]


def test_minimal_guests_cost_almost_nothing(minimal_guests, libvirt_system, tmp_path):
    doms = minimal_guests(3, workdir=tmp_path / "ds")
    time.sleep(1.0)
    for dom in doms:
        assert dom.isActive()
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == sorted(f"{d.name()}.img" for d in doms)
    cpu = [dom.getCPUStats(True)[0]["cpu_time"] for dom in doms]
    time.sleep(1.0)
    cpu2 = [dom.getCPUStats(True)[0]["cpu_time"] for dom in doms]
    # halted guests: well under 20 % of a CPU each
    assert all((b - a) < 0.2e9 for a, b in zip(cpu, cpu2)), (cpu, cpu2)


def _qemu_pid(name: str) -> int:
    with open(labd.host_path(f"/run/libvirt/qemu/{name}.pid")) as fh:  # the lab daemon's /run/libvirt
        return int(fh.read().strip())
