"""Messages of the fence a user acts on: a freeze of a VM without a guest agent says what to use instead."""

from __future__ import annotations

import libvirt
import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _fence_vm


class _Dom:
    def __init__(self, error: str) -> None:
        self.error = error

    def agentSetResponseTimeout(self, _seconds):
        return 0

    def fsFreeze(self):
        raise libvirt.libvirtError(self.error)


class _Shared:
    """The part of SharedConnection quiesce_one uses: call(fn) and domain(conn, uuid)."""

    def __init__(self, dom: _Dom) -> None:
        self.dom = dom

    def call(self, fn):
        return fn(None, 0)

    def domain(self, _conn, _uuid):
        return self.dom


VM = {"uuid": "6b1c4e1e-0000-4000-8000-000000000001", "name": "web1", "state": "running"}


def test_freeze_without_agent_says_use_auto_or_suspend():
    out = _fence_vm.quiesce_one(_Shared(_Dom("argument unsupported: QEMU guest agent is not configured")), VM,
                                "freeze", 5)
    assert "freeze of VM web1" in out["error"] and "QEMU guest agent is not configured" in out["error"]
    assert "kvmsnap_quiesce_mode" in out["error"]
    assert "mode auto" in out["error"] and "suspend" in out["error"]


@pytest.mark.parametrize("error", ["internal error: unable to execute QEMU agent command: timeout"])
def test_other_freeze_failures_carry_no_agent_hint(error):
    out = _fence_vm.quiesce_one(_Shared(_Dom(error)), VM, "freeze", 5)
    assert error in out["error"] and "kvmsnap_quiesce_mode" not in out["error"]
