"""Snap Creator KVM_VM_MAPPING parser: the documented form and every bad input (docs/dev/faults.md#bad-input)."""

from __future__ import annotations

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils._vm_mapping import (
    VmMappingError,
    format_vm_mapping,
    parse_vm_mapping,
)


def test_documented_form_with_trailing_semicolon():
    entries = parse_vm_mapping("VM1:ctrl1:/vol/vol1/lun1;VM2:ctrl2:/vol/vol2/lun2;")
    assert [(e["index"], e["vm"], e["controller"], e["volume"], e["path"]) for e in entries] == [
        (1, "VM1", "ctrl1", "vol1", "/vol/vol1/lun1"),
        (2, "VM2", "ctrl2", "vol2", "/vol/vol2/lun2"),
    ]
    assert entries[0]["svm"] is None


def test_without_trailing_semicolon_and_single_entry():
    assert len(parse_vm_mapping("VM1:ctrl1:/vol/vol1/lun1")) == 1
    assert len(parse_vm_mapping("VM1:ctrl1:/vol/vol1/lun1;VM2:ctrl2:/vol/vol2/lun2")) == 2


def test_empty_and_none():
    assert parse_vm_mapping(None) == []
    assert parse_vm_mapping("") == []
    assert parse_vm_mapping([]) == []


def test_empty_middle_entry():
    with pytest.raises(VmMappingError, match="entry 2 is empty"):
        parse_vm_mapping("VM1:c:/vol/v/l1;;VM2:c:/vol/v/l2")


def test_only_separators():
    with pytest.raises(VmMappingError, match="entry 1 is empty"):
        parse_vm_mapping(";")
    with pytest.raises(VmMappingError, match="entry 1 is empty"):
        parse_vm_mapping(";;")


@pytest.mark.parametrize("text", ["VM1:ctrl", "VM1", "VM1:ctrl;", "VM1:c:/vol/v/l;VM2:c2"])
def test_missing_field(text):
    with pytest.raises(VmMappingError, match="expected vm:controller:path"):
        parse_vm_mapping(text)


@pytest.mark.parametrize("text, field", [("VM1::/vol/v/l", "controller"), (":c:/vol/v/l", "vm"), ("VM1:c:", "path")])
def test_empty_field(text, field):
    with pytest.raises(VmMappingError, match="the %s field is empty" % field):
        parse_vm_mapping(text)


def test_ipv6_controller_needs_brackets():
    with pytest.raises(VmMappingError, match=r"IPv6 address; write it in brackets \(vm:\[fe80::1\]:path\)"):
        parse_vm_mapping("VM1:fe80::1:/vol/vol1/lun1")
    with pytest.raises(VmMappingError, match="IPv6"):
        parse_vm_mapping("VM1:2001:db8::10:/vol/vol1/lun1")
    entries = parse_vm_mapping("VM1:[fe80::1]:/vol/vol1/lun1;VM2:[2001:db8::10]:/vol/vol2/lun2;")
    assert [e["controller"] for e in entries] == ["fe80::1", "2001:db8::10"]
    assert format_vm_mapping(entries) == "VM1:[fe80::1]:/vol/vol1/lun1;VM2:[2001:db8::10]:/vol/vol2/lun2"


@pytest.mark.parametrize("text", ["VM1:[fe80::1/vol/v/l", "VM1:[fe80::1]/vol/v/l", "VM1:[ctrl1]:/vol/v/l"])
def test_bad_brackets(text):
    with pytest.raises(VmMappingError):
        parse_vm_mapping(text)


@pytest.mark.parametrize("text, hint", [
    ("VM1:c:/vol/v/l1,VM2:c:/vol/v/l2", "not ','"),
    ("VM1:c:/vol/v/l1\nVM2:c:/vol/v/l2", "one line"),
    ("VM1:c:/vol/v/l1\r\nVM2:c:/vol/v/l2", "line break"),
    ("VM1:c:/vol/v/l1\uff1bVM2:c:/vol/v/l2", "ASCII ';'"),
    ("VM1\uff1ac\uff1a/vol/v/l1", "ASCII ':'"),
    ("VM1:c:/vol/v/l1;\tVM2:c:/vol/v/l2", "without tabs"),
    ("VM1\tc\t/vol/v/l1", "without tabs"),
])
def test_wrong_separators_with_hint(text, hint):
    with pytest.raises(VmMappingError) as err:
        parse_vm_mapping(text)
    assert hint in str(err.value)
    assert "vm:controller:path" in str(err.value)


def test_trailing_newline_of_a_yaml_block_is_fine():
    assert len(parse_vm_mapping("VM1:c:/vol/v/l1;VM2:c:/vol/v/l2;\n")) == 2


def test_same_vm_twice_with_different_paths():
    with pytest.raises(VmMappingError, match="VM 'VM1' appears twice with different storage"):
        parse_vm_mapping("VM1:c:/vol/v/l1;VM1:c:/vol/v/l2")
    with pytest.raises(VmMappingError, match="appears twice"):
        parse_vm_mapping("VM1:c1:/vol/v/l1;VM1:c2:/vol/v/l1")


def test_same_vm_twice_identical_is_deduplicated():
    assert len(parse_vm_mapping("VM1:c:/vol/v/l1;VM1:c:/vol/v/l1;")) == 1


def test_two_vms_on_one_lun():
    with pytest.raises(VmMappingError, match=r"VMs 'VM1' \(entry 1\) and 'VM2' \(entry 2\) are both on c:/vol/v/l1"):
        parse_vm_mapping("VM1:c:/vol/v/l1;VM2:c:/vol/v/l1")
    # the same path on two controllers is two LUNs
    assert len(parse_vm_mapping("VM1:c1:/vol/v/l1;VM2:c2:/vol/v/l1")) == 2


@pytest.mark.parametrize("path", ["vol/v/l", "/vol/v/../w/l", "/vol//v/l", "/vol/./v"])
def test_bad_paths(path):
    with pytest.raises(VmMappingError, match="path"):
        parse_vm_mapping("VM1:c:%s" % path)


@pytest.mark.parametrize("name", ["vm with spaces", "vm-ü-ñ", "$(id)", "`id`", "-leading", "../x"])
def test_vm_names_are_opaque(name):
    entry = parse_vm_mapping("%s:c:/vol/v/l" % name)[0]
    assert entry["vm"] == name


def test_leading_space_in_field_refused():
    with pytest.raises(VmMappingError, match="leading or trailing spaces"):
        parse_vm_mapping("VM1: c:/vol/v/l")


def test_structured_form():
    entries = parse_vm_mapping([
        {"vm": "VM1", "controller": "fe80::1", "path": "/vol/vol1/lun1", "svm": "svm_san"},
        {"vm": "VM2", "controller": "ctrl2", "path": "/vol/vol2/lun2", "volume": "vol2"},
    ])
    assert entries[0]["controller"] == "fe80::1" and entries[0]["svm"] == "svm_san" and entries[0]["volume"] == "vol1"
    assert entries[1]["volume"] == "vol2"


@pytest.mark.parametrize("items, match", [
    ([{"vm": "VM1", "controller": "c"}], "entry 1: path is missing"),
    ([{"vm": "VM1", "controller": "c", "path": "/vol/v/l", "lun": "x"}], "unknown key"),
    (["VM1:c:/vol/v/l"], "expected a dict"),
    ([{"vm": "VM1", "controller": "c", "path": 5}], "must be a string"),
    ([{"vm": "VM1", "controller": "c", "path": "/vol/v/l"}, {"vm": "VM2", "controller": "c", "path": "/vol/v/l"}],
     "both on"),
    ({"vm": "VM1"}, "expected a list"),
])
def test_structured_errors(items, match):
    with pytest.raises(VmMappingError, match=match):
        parse_vm_mapping(items)
