"""`make demo` (tests/lab/demo.py) end to end: the README's first command must keep working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.guest_fixtures import SYSTEM_URI, ensure_lab_daemon

REPO = Path(__file__).resolve().parents[2]


def _libvirtd_ok() -> str | None:
    why = ensure_lab_daemon()
    if why:
        return why
    try:
        import libvirt
        libvirt.open(SYSTEM_URI).close()
    except Exception as exc:  # ImportError, libvirt.libvirtError
        return str(exc)
    return None


@pytest.mark.needs_libvirtd
@pytest.mark.needs_kvm_guests
@pytest.mark.slow
def test_make_demo_cycle_on_real_guests():
    why = _libvirtd_ok()
    if why:
        pytest.skip("the lab libvirtd is not reachable: %s" % why)
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "lab" / "demo.py")], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    if "falling back to libvirt's test driver" in out:
        pytest.skip("real guests cannot run here: " + out.split("real guests are not possible here: ")[1][:200])
    assert "DEMO OK: backup -> verify (boot from the snapshot) -> damage -> restore cycle on real guests" in out
    # the demo's proof lines, and the play's own summary lines
    assert out.count("booted=True from .snapshot/") == 2 and out.count("check rc=0 output '/dev/vda /data ext4") == 4
    assert "originals still running during the verify: yes; copies left: none" in out
    assert " verified=" in out.split("comment now: ")[1].splitlines()[0]
    assert "(latest_verified), verified by the verify run above: yes" in out
    assert "(deleted) is back: defined from its manifest, state=running" in out
    assert out.count("released=yes") == 2 and "pause window" in out
    assert "/data/DAMAGED after the restore: gone" in out
    assert "cleaned up: guests destroyed and undefined, simulator stopped" in out
    assert "kvmsnap-demo-" not in subprocess.run(["virsh", "-c", SYSTEM_URI, "list", "--all", "--name"],
                                                 capture_output=True, text=True, check=False).stdout


def test_demo_test_driver_fallback():
    """Where no real guest can run, the demo says so and still runs discover + backup (test driver)."""
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "lab" / "demo.py")], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, KVMSNAP_DEMO_TEST_DRIVER="1"), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "falling back to libvirt's test driver" in out
    assert "OK (2/2 VMs protected)" in out
    assert "cleaned up" in out
