"""ONTAP access rules: the privilege check (longest path / command directory decides, access levels), the local
catalog scoped to the inventory's controllers, and its pruning."""

from __future__ import annotations

import json
import time

import pytest
from helpers.docs_roles import rest_role, zapi_role

from ansible_collections.kvmsnap.core.plugins.module_utils import _manifest as mf
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_privileges import (
    check,
    cli_access,
    requirements,
    rest_access,
)

BACKUP = ["read", "snapshot_create", "snapshot_modify", "snapshot_delete"]
EVERYTHING = BACKUP + ["snapmirror_update", "file_restore", "lun_restore", "files_read"]


@pytest.mark.parametrize("version", [(9, 9, 1), (9, 13, 1)])
def test_the_roles_of_docs_security_md_pass_the_check(version):
    rest = rest_role()
    assert len(rest) >= 10
    assert check(rest, requirements(EVERYTHING + ["cg_create", "volume_restore"], "rest", (9, 13, 1)), "rest") == []
    # before 9.10.1 a REST file restore goes through the private CLI path: the role grants that too
    assert check(rest, requirements(EVERYTHING, "rest", version), "rest") == []
    zapi = zapi_role()
    assert check(zapi, requirements(EVERYTHING, "zapi", version), "zapi") == []
    assert rest_access(rest, "/api/security/accounts")[0] == "readonly"
    assert cli_access(zapi, "security login show")[0] == "readonly"


def test_longest_rest_path_decides_and_star_matches_one_segment():
    privs = [{"path": "/api", "access": "readonly"}, {"path": "/api/storage/volumes/*/snapshots", "access": "all"}]
    assert rest_access(privs, "/api/storage/volumes/*/snapshots") == ("all", "/api/storage/volumes/*/snapshots")
    assert rest_access(privs, "/api/storage/volumes/1234/snapshots") == ("all", "/api/storage/volumes/*/snapshots")
    assert rest_access(privs, "/api/storage/volumes") == ("readonly", "/api")
    assert rest_access([{"path": "/api/storage", "access": "all"}], "/api/cluster") == ("none", None)


def test_a_narrower_none_wins_over_a_broad_all():
    privs = [{"path": "/api", "access": "all"}, {"path": "/api/storage/volumes/*/snapshots", "access": "none"}]
    missing = check(privs, requirements(BACKUP, "rest", (9, 13, 1)), "rest")
    assert {m["operation"] for m in missing} == {"read", "snapshot_create", "snapshot_modify", "snapshot_delete"}


@pytest.mark.parametrize("access, ok", [("readonly", set()), ("read_create", {"snapshot_create"}),
                                        ("read_create_modify", {"snapshot_create", "snapshot_modify"}),
                                        ("all", set(BACKUP))])
def test_rest_access_levels(access, ok):
    privs = [{"path": "/api", "access": "readonly"}, {"path": "/api/storage/volumes/*/snapshots", "access": access}]
    missing = {m["operation"] for m in check(privs, requirements(BACKUP, "rest", (9, 13, 1)), "rest")}
    assert set(BACKUP) - missing == ok | {"read"}


def test_zapi_command_directories_and_default():
    cmds = [{"command": "DEFAULT", "access": "readonly"}, {"command": "volume snapshot", "access": "all"},
            {"command": "volume snapshot delete", "access": "none"}]
    assert cli_access(cmds, "volume snapshot create") == ("all", "volume snapshot")
    assert cli_access(cmds, "volume snapshot delete") == ("none", "volume snapshot delete")
    assert cli_access(cmds, "snapmirror update") == ("readonly", "DEFAULT")
    missing = check(cmds, requirements(BACKUP + ["snapmirror_update"], "zapi", (9, 8, 0)), "zapi")
    assert [(m["operation"], m["path"]) for m in missing] == [("snapshot_delete", "volume snapshot delete"),
                                                              ("snapmirror_update", "snapmirror update")]


def test_file_restore_before_9_10_1_needs_the_private_cli_path():
    assert requirements(["file_restore"], "rest", (9, 9, 1)) == [
        ("file_restore", "/api/private/cli/volume/snapshot/restore-file", "all")]
    assert requirements(["file_restore"], "rest", (9, 13, 1)) == [("file_restore", "/api/storage/volumes",
                                                                   "read_modify")]
    with pytest.raises(ValueError, match="unknown ONTAP operation"):
        requirements(["format_disks"], "rest", (9, 13, 1))


def _catalog_entry(state_dir, snap, uuid, controller, policy="daily"):
    d = state_dir / "catalog" / snap / uuid
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"snapshot": snap, "policy": policy, "disks": [
        {"controller": controller, "svm": "svm1", "volume": "vol_ds1"}]}))
    return str(d / "manifest.json")


def test_catalog_volumes_scoped_to_the_inventorys_controllers(tmp_path):
    mine = _catalog_entry(tmp_path, "kvmsnap-daily_a", "0c1a2b3c-0000-4000-8000-000000000001", "c1")
    other = _catalog_entry(tmp_path, "kvmsnap-daily_b", "0c1a2b3c-0000-4000-8000-000000000002", "cluster2")
    everything = mf.catalog_volumes(str(tmp_path))
    assert [v["controller"] for v in everything["volumes"]] == ["c1", "cluster2"]
    scoped = mf.catalog_volumes(str(tmp_path), controllers=["c1"])
    assert [(v["controller"], v["entry"]["file"]) for v in scoped["volumes"]] == [("c1", mine)]
    assert scoped["ignored"] == [{"file": other, "snapshot": "kvmsnap-daily_b", "policy": "daily",
                                  "controller": "cluster2"}]


def test_catalog_prune_removes_entries_of_gone_snapshots_only_where_it_looked(tmp_path):
    _catalog_entry(tmp_path, "kvmsnap-daily_gone", "0c1a2b3c-0000-4000-8000-000000000003", "c1")
    _catalog_entry(tmp_path, "kvmsnap-daily_here", "0c1a2b3c-0000-4000-8000-000000000004", "c1")
    _catalog_entry(tmp_path, "kvmsnap-daily_other", "0c1a2b3c-0000-4000-8000-000000000005", "cluster2")
    _catalog_entry(tmp_path, "kvmsnap-daily_now", "0c1a2b3c-0000-4000-8000-000000000006", "c1")
    args = (str(tmp_path), ["kvmsnap-daily_here"], ["c1:svm1:vol_ds1"], ["kvmsnap-daily_now"])
    would = mf.catalog_prune(*args, check_mode=True)
    assert [r["snapshot"] for r in would] == ["kvmsnap-daily_gone"]
    assert (tmp_path / "catalog" / "kvmsnap-daily_gone").is_dir()
    done = mf.catalog_prune(*args)
    assert [(r["snapshot"], r["reason"]) for r in done] == [
        ("kvmsnap-daily_gone", "snapshot kvmsnap-daily_gone no longer exists on c1:svm1:vol_ds1")]
    left = sorted(p.name for p in (tmp_path / "catalog").iterdir())
    assert left == ["kvmsnap-daily_here", "kvmsnap-daily_now", "kvmsnap-daily_other"]
    aged = mf.catalog_prune(str(tmp_path), ["kvmsnap-daily_here"], [], ["kvmsnap-daily_now"], keep_days=1,
                            now=time.time() + 2 * 86400)
    assert sorted(r["snapshot"] for r in aged) == ["kvmsnap-daily_here", "kvmsnap-daily_other"]


def test_a_temporary_consistency_group_needs_create_and_delete():
    """A backup of several volumes of one SVM creates and then deletes a CG: a role that may only create it fails."""
    privs = [{"path": "/api/storage/volumes", "access": "read_modify"},
             {"path": "/api/storage/volumes/*/snapshots", "access": "all"},
             {"path": "/api/application/consistency-groups", "access": "read_create"}]
    missing = check(privs, requirements(["cg_create"], "rest", (9, 13, 1)), "rest")
    assert missing and "consistency-groups" in json.dumps(missing)
    privs[-1]["access"] = "all"
    assert check(privs, requirements(["cg_create"], "rest", (9, 13, 1)), "rest") == []
