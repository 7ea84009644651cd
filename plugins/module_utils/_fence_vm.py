# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Quiesce and release of one VM (suspend/resume, guest-agent freeze/thaw); never raise, report per VM.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils import _libvirt
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_conn import (
    VIR_DOMAIN_PAUSED,
    VIR_DOMAIN_RUNNING,
    SharedConnection,
    agent_missing_hint,
    agent_not_configured,
    agent_not_connected,
    agent_ping,
    freeze_status,
    set_agent_timeout,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_rules import consistency_for
from ansible_collections.kvmsnap.core.plugins.module_utils._retry import retry

THAW_RETRIES = 2  # a thaw that failed is tried again this often before the release reports it


def quiesce_one(sc: SharedConnection, vm: Dict[str, Any], mode: str, agent_timeout: int) -> Dict[str, Any]:
    """Quiesce one running VM. Returns {action, consistency, error, detail, t_start, t_done}; never raises.

    ``t_start`` is when the call that stops the guest (freeze or suspend) was made: the agent's status check and
    ping before it do not stop the guest's I/O."""
    out: Dict[str, Any] = {"action": "none", "consistency": "crash", "error": None, "detail": None,
                           "frozen_filesystems": None}

    def suspend(conn: Any, attempt: int) -> None:
        dom = sc.domain(conn, vm["uuid"])
        if attempt and dom.state()[0] == VIR_DOMAIN_PAUSED:
            return  # the first attempt went through before the connection dropped
        dom.suspend()

    def freeze(conn: Any, attempt: int) -> int:
        dom = sc.domain(conn, vm["uuid"])
        if attempt:  # set before the pause (prepare_freeze); again after a reconnect, to be sure
            set_agent_timeout(dom, agent_timeout)
        return dom.fsFreeze()

    def prepare_freeze(conn: Any, _attempt: int) -> Optional[str]:
        dom = sc.domain(conn, vm["uuid"])
        set_agent_timeout(dom, agent_timeout)  # libvirtd keeps it for the domain: one call less inside the pause
        return freeze_status(dom, agent_timeout)

    try:
        if mode in ("freeze", "auto"):
            if sc.call(prepare_freeze) == "frozen":
                out["detail"] = "guest filesystems were frozen before this run; left untouched"
                out["t_done"] = time.monotonic()
                out["user_frozen"] = True
                return out
            use_freeze = True
            if mode == "auto":
                ping = sc.call(lambda conn, _a: agent_ping(sc.domain(conn, vm["uuid"]), agent_timeout))
                use_freeze = ping is not False
                if not use_freeze:
                    out["detail"] = "guest agent did not answer guest-ping within %ds; suspended instead" % agent_timeout
            if use_freeze:
                try:
                    out["t_start"] = time.monotonic()
                    count = sc.call(freeze)
                    out["action"] = "frozen"
                    out["frozen_filesystems"] = count
                    out["consistency"] = consistency_for("frozen", "running", count)
                    if count == 0:
                        out["detail"] = "the guest agent froze no filesystem; crash-consistent"
                    out["t_done"] = time.monotonic()
                    return out
                except Exception as err:
                    if mode == "freeze":
                        # the freeze may still land (agent slow): release must thaw; unless it never reached
                        # the guest (no agent configured or connected: libvirt sends nothing), see
                        # docs/dev/faults.md#freeze-no-agent
                        out["action"] = "none" if agent_not_connected(err) else "frozen"
                        raise
                    out["detail"] = "guest-agent freeze failed (%s); suspended instead" % err
                    try:  # undo a freeze that may have happened partly before suspending
                        sc.call(lambda conn, _a: sc.domain(conn, vm["uuid"]).fsThaw())
                    except Exception:
                        pass
        if mode in ("suspend", "auto"):
            out["action"] = "suspended"
            out.setdefault("t_start", time.monotonic())  # after a failed freeze: the guest was stopped from then
            sc.call(suspend)
            out["consistency"] = consistency_for("suspended", "running")
            out["t_done"] = time.monotonic()
            return out
        out["t_done"] = time.monotonic()
        return out
    except Exception as err:
        op = "freeze" if mode == "freeze" else "suspend"
        hint = agent_missing_hint(err) if op == "freeze" else ""
        out["error"] = "%s of VM %s (%s) failed: %s%s" % (op, vm["name"], vm["uuid"], err, hint)
        out["consistency"] = "crash"
        out["t_done"] = time.monotonic()
        return out


def release_one(sc: SharedConnection, vm: Dict[str, Any], agent_timeout: int) -> Dict[str, Any]:
    """Undo what the run did to one VM (action suspended/frozen/auto). Idempotent; never raises."""
    action = vm.get("action")
    out: Dict[str, Any] = {"result": None, "error": None}

    def not_paused(state: int) -> str:
        return "already running" if state == VIR_DOMAIN_RUNNING else "not paused (%s)" % _libvirt.state_name(state)

    def resume(conn: Any, _attempt: int) -> str:
        dom = sc.domain(conn, vm["uuid"])
        try:
            dom.resume()  # one libvirt call inside the pause window; the state is read only when it fails
        except Exception as err:
            if _libvirt.error_code(err) == _libvirt.VIR_ERR_NO_DOMAIN:
                raise
            state = dom.state()[0]
            if state != VIR_DOMAIN_PAUSED:  # F9 (docs/dev/faults.md#f9): someone resumed it meanwhile
                return not_paused(state)
            raise err
        return "resumed"

    def thaw(conn: Any, _attempt: int) -> str:
        dom = sc.domain(conn, vm["uuid"])
        set_agent_timeout(dom, agent_timeout)
        thawed = dom.fsThaw()
        return "thawed" if thawed else "already thawed"

    thaw_failures: List[Exception] = []

    def thaw_or_status(_attempt: int) -> str:
        """One thaw; when it fails, ask the agent whether the guest is thawed anyway."""
        try:
            return sc.call(thaw)
        except Exception as err:
            if _libvirt.error_code(err) == _libvirt.VIR_ERR_NO_DOMAIN:
                raise
            if agent_not_configured(err):
                # no agent channel: nothing can have been frozen (journals of older runs record a freeze
                # attempt on such a VM as frozen)
                return "nothing to thaw (no guest agent configured)"
            thaw_failures.append(err)
            failure = err
        if sc.call(lambda conn, _a: freeze_status(sc.domain(conn, vm["uuid"]), agent_timeout)) == "thawed":
            return "already thawed"
        raise failure

    try:
        if action in ("frozen", "auto"):
            try:  # F4 (docs/dev/faults.md#f4): retry the thaw, then check the status
                out["result"] = retry(thaw_or_status, THAW_RETRIES, lambda err: err in thaw_failures)
            except Exception as err:
                if action == "frozen" or err not in thaw_failures:
                    raise
        if action in ("suspended", "auto"):
            res = sc.call(resume)
            out["result"] = res if action == "suspended" or res == "resumed" else (out["result"] or res)
    except Exception as err:
        if _libvirt.error_code(err) == _libvirt.VIR_ERR_NO_DOMAIN:
            out["result"] = "gone"
        else:
            what = "thaw" if action == "frozen" else "resume"
            out["error"] = ("release (%s) of VM %s (%s) failed: %s; check it with 'virsh domstate %s' and "
                            "'virsh domfsfreeze'/'domfsthaw'." % (what, vm.get("name"), vm["uuid"], err, vm["uuid"]))
    out["t_done"] = time.monotonic()
    return out
