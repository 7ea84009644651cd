"""Small helpers for tests that drive libvirt domains."""

from __future__ import annotations

import contextlib
import time

PAUSED = 3


def states(doms):
    """libvirt state numbers of DOMS, in order."""
    return [d.state()[0] for d in doms]


def wait_for(pred, timeout, step=0.05):
    """Poll PRED until it is true or TIMEOUT seconds passed; the last answer."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def resume_all(doms):
    """Test cleanup: never leave a paused domain behind, whatever the test did."""
    for d in doms:
        try:
            if d.state()[0] == PAUSED:
                d.resume()
        except Exception:  # already gone, or libvirtd restarted under it
            pass


@contextlib.contextmanager
def block_job(dom, dest):
    """DOM with a running block job (a copy of its hda into the file DEST, kept in its mirror phase); aborted after."""
    import libvirt
    dom.blockCopy("hda", "<disk type='file'><driver type='raw'/><source file='%s'/></disk>" % dest, None,
                  libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)
    try:
        assert wait_for(lambda: bool(dom.blockJobInfo("hda", 0)), 10), "the block job did not start"
        yield dom
    finally:
        dom.blockJobAbort("hda", 0)
