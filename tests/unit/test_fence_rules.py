"""Pure rules of the fence: consistency levels never claim more than reached, planned actions, skips."""

from __future__ import annotations

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _fence_rules


@pytest.mark.parametrize("action, prior, count, level", [
    ("frozen", "running", 2, "filesystem"),
    ("frozen", "running", 0, "crash"),        # the agent froze nothing
    ("frozen", "running", None, "filesystem"),
    ("suspended", "running", None, "suspended"),
    ("none", "running", None, "crash"),       # mode none / failure allowed by policy
    ("none", "paused", None, "crash"),        # user-paused: not ours, not claimed
    ("none", "shutoff", None, "offline"),
])
def test_consistency_for(action, prior, count, level):
    assert _fence_rules.consistency_for(action, prior, count) == level


def test_application_never_claimed():
    for action in ("frozen", "suspended", "none"):
        for count in (None, 0, 5):
            assert _fence_rules.consistency_for(action, "running", count) != "application"


def test_weakest():
    assert _fence_rules.weakest(["filesystem", "suspended", "crash"]) == "crash"
    assert _fence_rules.weakest(["filesystem", "suspended"]) == "suspended"
    assert _fence_rules.weakest(["offline", "filesystem"]) == "filesystem"
    assert _fence_rules.weakest([]) is None


@pytest.mark.parametrize("mode, state, action", [
    ("suspend", "running", "suspended"), ("freeze", "running", "frozen"), ("auto", "running", "auto"),
    ("none", "running", "none"), ("suspend", "paused", "none"), ("freeze", "shutoff", "none"),
    ("auto", "pmsuspended", "none"),
])
def test_planned_action(mode, state, action):
    assert _fence_rules.planned_action(mode, state) == action


def test_skip_reasons():
    assert "untouched" in _fence_rules.skip_reason("suspend", "paused", "user")
    assert _fence_rules.skip_reason("suspend", "running") is None
    assert "crash" in _fence_rules.skip_reason("none", "running")


def test_test_uri():
    assert _fence_rules.is_test_uri("test:///default") and not _fence_rules.is_test_uri("qemu:///system")
