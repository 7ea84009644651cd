"""Snap Creator KVM plug-in configuration reader."""

from __future__ import annotations

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils._snapcreator_config import (
    SnapCreatorConfigError,
    merge_settings,
    parse_config,
)

FULL = """\
# Snap Creator KVM plug-in configuration
SNAME=nightly
APP_NAME=kvm
NTAP_USERS=cluster1:admin/53cr3tV4lu3;cluster2:admin/other
NTAP_PWD_PROTECTION=N
VOLUMES=cluster1:vol_ds1,vol_ds2
KVM_VM_MAPPING=VM1:cluster1:/vol/vol1/lun1;VM2:cluster1:/vol/vol2/lun2;
KVM_RESTORE_VM_LIST=VM1,VM2
KVM_VM_CONFIG_DIR=/etc/libvirt/qemu/
KVM_CMD_RETRY_COUNT=5
SC_AGENT_TIMEOUT=600
NTAP_SNAPSHOT_RETENTIONS=daily:7,weekly:4
NTAP_SNAPMIRROR_UPDATE=Y
NTAP_SNAPVAULT_UPDATE=n
APP_DEFINED_RESTORE=Y
NTAP_CONSISTENCY_GROUP_SNAPSHOT=Y
FOO_UNKNOWN=bar
EMPTY_ONE=
"""


def test_full_config_maps_every_kvm_key():
    res = parse_config(FULL)
    v = res["vars"]
    assert v["kvmsnap_snapshot_prefix"] == "nightly"
    assert v["kvmsnap_vm_mapping"] == "VM1:cluster1:/vol/vol1/lun1;VM2:cluster1:/vol/vol2/lun2;"
    assert v["kvmsnap_restore_vms"] == ["VM1", "VM2"]
    assert v["kvmsnap_config_dir"] == "/etc/libvirt/qemu"
    assert v["kvmsnap_retries"] == 5
    assert v["kvmsnap_timeout"] == 600
    assert v["kvmsnap_quiesce_deadline"] == 600
    assert v["kvmsnap_retention"] == "daily:7,weekly:4"
    assert v["kvmsnap_snapmirror_update"] is True
    assert v["kvmsnap_snapvault_update"] is False
    assert v["kvmsnap_restore_mode"] == "files"
    assert res["sources"]["kvmsnap_retention"] == "NTAP_SNAPSHOT_RETENTIONS (line 12)"
    assert any("consistent snapshot is the default" in n for n in res["notes"])
    ignored = {i["key"]: i for i in res["ignored"]}
    assert set(ignored) == {"APP_NAME", "NTAP_USERS", "NTAP_PWD_PROTECTION", "VOLUMES", "FOO_UNKNOWN"}
    assert "inventory" in ignored["NTAP_USERS"]["reason"]
    assert ignored["FOO_UNKNOWN"]["line"] == 17
    # secrets never appear anywhere in the result
    assert "53cr3tV4lu3" not in repr(res)


def test_ntap_snapshot_name_alias_and_quotes():
    res = parse_config('NTAP_SNAPSHOT_NAME="vmbk"\n')
    assert res["vars"]["kvmsnap_snapshot_prefix"] == "vmbk"


def test_both_name_keys_is_an_error():
    with pytest.raises(SnapCreatorConfigError, match="line 2: NTAP_SNAPSHOT_NAME sets kvmsnap_snapshot_prefix"):
        parse_config("SNAME=a\nNTAP_SNAPSHOT_NAME=b\n")


def test_app_defined_restore_n_maps_to_guarded_volume_mode():
    res = parse_config("APP_DEFINED_RESTORE=N\n")
    assert res["vars"]["kvmsnap_restore_mode"] == "volume"
    assert any("still refused" in n for n in res["notes"])


def test_consistency_group_n_is_a_note_not_a_var():
    res = parse_config("NTAP_CONSISTENCY_GROUP_SNAPSHOT=N\n")
    assert res["vars"] == {}
    assert "always takes one consistent" in res["notes"][0]


def test_empty_values_are_unset():
    assert parse_config("KVM_RESTORE_VM_LIST=\nSNAME=\n")["vars"] == {}


def test_empty_secret_key_still_reported_ignored():
    res = parse_config("NTAP_USERS=\n")
    assert res["ignored"][0]["key"] == "NTAP_USERS"


@pytest.mark.parametrize("text, match", [
    ("NTAP_SNAPSHOT_RETENTIONS=daily:0\n", r"line 1: NTAP_SNAPSHOT_RETENTIONS entry 1: the count is out of range"),
    ("NTAP_SNAPSHOT_RETENTIONS=daily:true\n", r"line 1: NTAP_SNAPSHOT_RETENTIONS entry 1: the count is not an integer"),
    ("NTAP_SNAPSHOT_RETENTIONS=daily:3.5\n", r"not an integer"),
    ("NTAP_SNAPSHOT_RETENTIONS=daily\n", r"has no ':'"),
    ("NTAP_SNAPMIRROR_UPDATE=maybe\n", r"line 1: NTAP_SNAPMIRROR_UPDATE is not Y or N; allowed: Y or N"),
    ("NTAP_SNAPVAULT_UPDATE=2\n", r"allowed: Y or N"),
    ("KVM_CMD_RETRY_COUNT=-1\n", r"allowed: an integer from 0 to 10"),
    ("KVM_CMD_RETRY_COUNT=11\n", r"out of range"),
    ("SC_AGENT_TIMEOUT=0\n", r"out of range; allowed: an integer from 1"),
    ("SC_AGENT_TIMEOUT=ten\n", r"line 1: SC_AGENT_TIMEOUT is not an integer"),
    ("KVM_VM_CONFIG_DIR=etc/libvirt\n", r"absolute path"),
    ("KVM_VM_CONFIG_DIR=/etc/../tmp\n", r"without '..'"),
    ("KVM_VM_MAPPING=VM1:c1:/vol/v/l1;;VM2:c1:/vol/v/l2\n", r"entry 2 is empty"),
    ("KVM_VM_MAPPING=VM1:c1\n", r"entry 1 has 2 non-empty ':' fields, not 3 \(vm:controller:path\)"),
    ("KVM_VM_MAPPING=VM1:fe80::1:/vol/v/l\n", r"IPv6 controller goes in brackets"),
    ("KVM_VM_MAPPING=VM1:c1:/vol/v/l1;VM1:c1:/vol/v/l2\n", r"entry 2 maps the VM of entry 1 to a second path"),
    ("KVM_VM_MAPPING=VM1:c1:/vol/v/l1\uff1bVM2:c1:/vol/v/l2\n", r"full-width"),
    ("KVM_RESTORE_VM_LIST=VM1,,VM2\n", r"entry 2 is empty"),
    ("KVM_RESTORE_VM_LIST=VM1,VM1\n", r"line 1: KVM_RESTORE_VM_LIST entry 2 repeats entry 1"),
    ("SNAME=hourly.x\n", r"line 1: SNAME starts with a reserved prefix"),
    ("SNAME=bad name\n", r"line 1: SNAME contains characters that are not allowed"),
    ("just some text\n", r"line 1 is not a KEY=VALUE line \(its text is not shown"),
    ("SNAME=a\nSNAME=b\n", r"line 2: SNAME is set again \(first on line 1\)"),
])
def test_bad_values_name_line_key_and_allowed_form(text, match):
    with pytest.raises(SnapCreatorConfigError, match=match):
        parse_config(text)


def test_ipv6_in_brackets_and_trailing_separators_accepted():
    res = parse_config("KVM_VM_MAPPING=VM1:[fe80::1]:/vol/v/l1;\nKVM_RESTORE_VM_LIST=VM1,\n")
    assert res["vars"]["kvmsnap_restore_vms"] == ["VM1"]
    assert res["vars"]["kvmsnap_vm_mapping"].startswith("VM1:[fe80::1]")


def test_comments_and_blank_lines_and_lowercase_keys():
    res = parse_config("\n# c\n; c\n  kvm_cmd_retry_count = 2 \n")
    assert res["vars"] == {"kvmsnap_retries": 2}


def test_not_text():
    with pytest.raises(SnapCreatorConfigError):
        parse_config(None)


def test_merge_keeps_explicit_values_and_fills_defaults():
    defaults = {"kvmsnap_retention": "daily:7,weekly:4", "kvmsnap_retries": 3}
    current = {"kvmsnap_retention": "daily:7,weekly:4", "kvmsnap_retries": 9}
    out = merge_settings(current, defaults, {"kvmsnap_retention": "daily:3", "kvmsnap_retries": 5},
                         {"kvmsnap_retries": "KVM_CMD_RETRY_COUNT (line 4)"})
    assert out["vars"] == {"kvmsnap_retention": "daily:3", "kvmsnap_retries": 9}
    assert out["from_file"] == ["kvmsnap_retention"]
    assert out["overridden"] == [{"var": "kvmsnap_retries", "source": "KVM_CMD_RETRY_COUNT (line 4)"}]
