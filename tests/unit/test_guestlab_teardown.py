"""tests/lab/guestlab: lab domains are torn down side by side (destroy_all, cleanup_prefix), every one of them."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))

from guestlab import domain


class FakeDomain:
    """A running persistent domain whose destroy waits at BARRIER: it returns only when the others run too."""

    def __init__(self, name: str, barrier: threading.Barrier | None = None) -> None:
        self._name = name
        self.barrier = barrier
        self.active = True
        self.defined = True

    def name(self) -> str:
        return self._name

    def isActive(self) -> bool:  # libvirt's method names
        return self.active

    def isPersistent(self) -> bool:
        return self.defined

    def destroy(self) -> None:
        if self.barrier is not None:
            self.barrier.wait()
        self.active = False

    def undefineFlags(self, flags: int) -> None:
        self.defined = False


class FakeConn:
    def __init__(self, doms: list[FakeDomain]) -> None:
        self.doms = doms

    def listAllDomains(self, flags: int) -> list[FakeDomain]:
        return list(self.doms)


def test_destroy_all_stops_the_domains_side_by_side():
    barrier = threading.Barrier(4, timeout=30)  # broken (BrokenBarrierError) unless all four destroys overlap
    doms = [FakeDomain("kvs-1-m%d" % i, barrier) for i in range(4)]
    domain.destroy_all([*doms, None])
    assert not barrier.broken
    assert [(d.active, d.defined) for d in doms] == [(False, False)] * 4


def test_cleanup_prefix_removes_only_the_prefix_and_names_them():
    barrier = threading.Barrier(2, timeout=30)
    ours = [FakeDomain("kvs-1-ply-g1", barrier), FakeDomain("kvs-1-ply-g2", barrier)]
    other = FakeDomain("kvs-1-chk-g1")
    assert domain.cleanup_prefix(FakeConn([ours[0], other, ours[1]]), "kvs-1-ply-") == ["kvs-1-ply-g1", "kvs-1-ply-g2"]
    assert not any(d.active or d.defined for d in ours)
    assert other.active and other.defined
