"""The ONTAP privilege pre-flight (ontap_snapshot_info privileges=...) against the simulator, REST and ZAPI.

The simulator lists each role's privileges as ONTAP does (REST paths with access levels, ZAPI command
directories) and enforces them; the check must fail on what ONTAP would refuse, before any call that changes
something, and pass a role that allows the run.
"""

from __future__ import annotations

import pytest
from helpers.docs_roles import rest_role
from helpers.module_fixtures import run_module
from helpers.sim_fixtures import start_sim

TRANSPORTS = ["rest", "zapi"]
BACKUP_OPS = ["read", "snapshot_create", "snapshot_modify", "snapshot_delete", "files_read"]
RESTORE_OPS = ["read", "snapshot_create", "file_restore", "files_read"]
# the role docs/security.md gives for backups and restores (REST part), as a custom role of the simulator
KVMSNAP_ROLE = rest_role()
CONFIG = {
    "users": [{"name": "admin", "password": "netapp123", "role": "admin"},
              {"name": "viewer", "password": "viewer-pw-123", "role": "readonly"},
              {"name": "backup", "password": "backup-pw-123", "role": "backup"},
              {"name": "kvmsnap", "password": "kvmsnap-pw-123", "role": "kvmsnap"},
              {"name": "blind", "password": "blind-pw-123", "role": "blind"}],
    "roles": {"kvmsnap": {"privileges": KVMSNAP_ROLE},
              "blind": {"privileges": [{"path": "/api", "access": "all"}, {"path": "/api/security", "access": "none"}]}},
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = start_sim(tmp_path_factory.mktemp("privsim"), CONFIG, extra_args=["--latency-scale", "0"])
    yield s
    s.stop()


def _check(sim, transport, user, password, ops):
    return run_module("ontap_snapshot_info", {**sim.conn(transport, user, password), "volumes": ["svm1:vol_ds1"],
                                              "privileges": ops})


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_readonly_user_fails_naming_user_role_path_and_access(sim, transport):
    res = _check(sim, transport, "viewer", "viewer-pw-123", BACKUP_OPS)
    assert res.failed, res
    msg = res["msg"]
    assert "user viewer" in msg and "role readonly" in msg and "docs/security.md" in msg, msg
    where = "/api/storage/volumes/*/snapshots" if transport == "rest" else "volume snapshot create"
    assert where in msg, msg
    assert res["privileges"]["checked"] and not res["privileges"]["ok"]
    assert {m["operation"] for m in res["privileges"]["missing"]} >= {"snapshot_create", "snapshot_delete"}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_backup_role_may_back_up_but_not_restore(sim, transport):
    ok = _check(sim, transport, "backup", "backup-pw-123", BACKUP_OPS)
    assert not ok.failed, ok
    assert ok["privileges"] == {**ok["privileges"], "ok": True, "checked": True, "role": "backup", "missing": []}
    res = _check(sim, transport, "backup", "backup-pw-123", RESTORE_OPS)
    assert res.failed and [m["operation"] for m in res["privileges"]["missing"]] == ["file_restore"], res
    assert ("/api/storage/volumes" if transport == "rest" else "volume snapshot restore-file") in res["msg"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_documented_custom_role_passes_backup_and_restore(sim, transport):
    for ops in (BACKUP_OPS + ["snapmirror_update", "cg_create"], RESTORE_OPS + ["lun_restore"]):
        ops = [o for o in ops if transport == "rest" or o != "cg_create"]
        res = _check(sim, transport, "kvmsnap", "kvmsnap-pw-123", ops)
        assert not res.failed, res
        assert res["privileges"]["checked"] and res["privileges"]["role"] == "kvmsnap"


def test_user_that_cannot_read_its_role_is_warned_not_failed(sim):
    res = _check(sim, "rest", "blind", "blind-pw-123", BACKUP_OPS)
    assert not res.failed, res
    assert res["privileges"]["checked"] is False
    warnings = str(res.get("warnings"))
    assert "user blind cannot read its own account and role" in warnings, res
