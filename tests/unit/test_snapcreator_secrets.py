"""Secrets stay secret: no error about a Snap Creator configuration ever carries a value or a raw line.

Each malformed form below puts a sentinel secret where a user could type a password by mistake; the
parser, the settings resolver and the role filters must name the line (and the key and allowed form
where they can be read) without the sentinel, the raw line, or any part of the value.
"""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kvmsnap.core.plugins.filter.roles import settings as settings_filter
from ansible_collections.kvmsnap.core.plugins.module_utils._snapcreator_config import (
    SnapCreatorConfigError,
    parse_config,
)
from ansible_collections.kvmsnap.core.plugins.plugin_utils._settings import SettingsError, resolve

S = "Zq7SentinelPw"  # mixed case on purpose: it must not be shown even where it sits in key position
CTRL = {"c1": {"ontap_hostname": "c1.example.com", "ontap_username": "admin", "has_password": True}}
HEAD = "# Snap Creator KVM\nAPP_NAME=kvm\n"  # the bad line is always line 3

# (bad line, what the error must say besides "line 3")
MALFORMED = [
    # credentials in a line that is not KEY=VALUE
    ("NTAP_USERS c1:admin/%s" % S, "NTAP_USERS is not followed by '='"),
    ("NTAP_USERS\tc1:admin/%s;c2:admin/%s" % (S, S), "NTAP_USERS is not followed by '='"),
    ("NTAP_USERS:c1:admin/%s" % S, "NTAP_USERS is not followed by '='"),
    ("NTAP_USERS c1:admin/pa=%s" % S, "NTAP_USERS is not followed by '='"),
    ("ntap_users c1:admin/%s" % S, "NTAP_USERS is not followed by '='"),
    ("NTAP_PWD_PROTECTION %s" % S, "NTAP_PWD_PROTECTION is not followed by '='"),
    ("SNAME %s" % S, "SNAME is not followed by '='"),
    (S, "line 3 is not a KEY=VALUE line"),
    ("%s more words" % S, "line 3 is not a KEY=VALUE line"),
    ("c1:admin/%s" % S, "line 3 is not a KEY=VALUE line"),
    ("admin/%s=x" % S, "line 3 is not a KEY=VALUE line"),
    ("=%s" % S, "line 3 is not a KEY=VALUE line"),
    ("9%s=x" % S, "line 3 is not a KEY=VALUE line"),
    ("%s: =x" % S, "line 3 is not a KEY=VALUE line"),
    # a password typed into a mapped key
    ("SNAME=%s!" % S, "SNAME contains characters that are not allowed"),
    ("NTAP_SNAPSHOT_NAME=%s pw" % S, "NTAP_SNAPSHOT_NAME contains characters that are not allowed"),
    ("NTAP_SNAPSHOT_NAME=\"%s/x\"" % S, "NTAP_SNAPSHOT_NAME contains characters that are not allowed"),
    ("NTAP_SNAPSHOT_NAME=hourly.%s" % S, "NTAP_SNAPSHOT_NAME starts with a reserved prefix"),
    ("NTAP_SNAPSHOT_NAME=9%s" % S, "NTAP_SNAPSHOT_NAME does not start with a letter or '_'"),
    ("NTAP_SNAPSHOT_NAME=%s" % (S * 20), "NTAP_SNAPSHOT_NAME is longer than 200 characters"),
    ("KVM_VM_MAPPING=%s" % S, "KVM_VM_MAPPING entry 1 has 1 non-empty ':' fields"),
    ("KVM_VM_MAPPING=vm1:c1:/vol/v/l1;admin:%s" % S, "KVM_VM_MAPPING entry 2 has 2 non-empty ':' fields"),
    ("KVM_VM_MAPPING=vm1:c1:/vol/v/l1;vm1:c1:/%s" % S, "entry 2 maps the VM of entry 1 to a second path"),
    ("KVM_VM_MAPPING=vm1:c1:/vol/v/l1;;%s" % S, "KVM_VM_MAPPING entry 2 is empty"),
    ("KVM_VM_MAPPING=vm1:c1:/v\t%s" % S, "entry 1 contains a tab"),
    ("KVM_VM_MAPPING=vm1:c1:/v\uff1b%s" % S, "full-width ';'"),
    ("KVM_RESTORE_VM_LIST=%s,%s" % (S, S), "KVM_RESTORE_VM_LIST entry 2 repeats entry 1"),
    ("KVM_RESTORE_VM_LIST=vm1,,%s" % S, "KVM_RESTORE_VM_LIST entry 2 is empty"),
    ("KVM_RESTORE_VM_LIST=%s\x07" % S, "KVM_RESTORE_VM_LIST entry 1 contains control characters"),
    ("KVM_VM_CONFIG_DIR=%s" % S, "KVM_VM_CONFIG_DIR is not an absolute path"),
    ("KVM_VM_CONFIG_DIR=/etc/../%s" % S, "KVM_VM_CONFIG_DIR contains '..'"),
    ("KVM_CMD_RETRY_COUNT=%s" % S, "KVM_CMD_RETRY_COUNT is not an integer"),
    ("SC_AGENT_TIMEOUT=%s" % S, "SC_AGENT_TIMEOUT is not an integer"),
    ("NTAP_SNAPSHOT_RETENTIONS=%s" % S, "NTAP_SNAPSHOT_RETENTIONS entry 1 has no ':'"),
    ("NTAP_SNAPSHOT_RETENTIONS=daily:%s" % S, "entry 1: the count is not an integer"),
    ("NTAP_SNAPSHOT_RETENTIONS=%s!:7" % S, "entry 1: the policy name is not valid"),
    ("NTAP_SNAPSHOT_RETENTIONS=daily:7,,%s" % S, "NTAP_SNAPSHOT_RETENTIONS entry 2 is empty"),
    ("NTAP_SNAPSHOT_RETENTIONS=%s:7,%s:3" % (S, S), "entry 2 repeats the policy of entry 1"),
    ("NTAP_SNAPMIRROR_UPDATE=%s" % S, "NTAP_SNAPMIRROR_UPDATE is not Y or N"),
    ("NTAP_SNAPVAULT_UPDATE='%s'" % S, "NTAP_SNAPVAULT_UPDATE is not Y or N"),
    ("APP_DEFINED_RESTORE=%s" % S, "APP_DEFINED_RESTORE is not Y or N"),
    ("NTAP_CONSISTENCY_GROUP_SNAPSHOT=%s" % S, "NTAP_CONSISTENCY_GROUP_SNAPSHOT is not Y or N"),
    # a secret key set twice: the key is named, its values are not
    ("NTAP_USERS=c1:admin/%s\nNTAP_USERS=c2:admin/%s" % (S, S), "NTAP_USERS is set again"),
]
# all-digit secrets (PINs) in integer keys: the number itself must not be echoed either
DIGITS = "9876543210"
NUMERIC = [
    ("SC_AGENT_TIMEOUT=%s" % DIGITS, "SC_AGENT_TIMEOUT is out of range"),
    ("KVM_CMD_RETRY_COUNT=%s" % DIGITS, "KVM_CMD_RETRY_COUNT is out of range"),
    ("NTAP_SNAPSHOT_RETENTIONS=daily:%s" % DIGITS, "entry 1: the count is out of range"),
]
IDS = [m[1][:40] + "-%d" % i for i, m in enumerate(MALFORMED)]


def _clean(message: str, secret: str) -> None:
    assert secret not in message, message
    assert secret.lower() not in message.lower(), message
    assert secret[:6] not in message, message  # not even a part of it


@pytest.mark.parametrize("bad, says", MALFORMED, ids=IDS)
def test_parser_names_the_line_never_the_secret(bad, says):
    with pytest.raises(SnapCreatorConfigError) as err:
        parse_config(HEAD + bad + "\n")
    message = str(err.value)
    _clean(message, S)
    _clean(repr(err.value.args), S)
    assert err.value.__cause__ is None or S not in str(err.value.__cause__)
    assert says in message, message
    assert "line 3" in message or "line 4" in message, message  # the second NTAP_USERS is on line 4
    assert "allowed" in message, message


@pytest.mark.parametrize("bad, says", NUMERIC)
def test_numbers_out_of_range_are_not_echoed(bad, says):
    with pytest.raises(SnapCreatorConfigError) as err:
        parse_config(HEAD + bad + "\n")
    assert DIGITS not in str(err.value) and says in str(err.value), str(err.value)
    assert "line 3" in str(err.value)


@pytest.mark.parametrize("bad, says", MALFORMED[:14] + MALFORMED[20:24], ids=IDS[:14] + IDS[20:24])
def test_settings_and_role_filters_never_echo_the_secret(bad, says):
    """Every caller: plugin_utils._settings.resolve and the roles' settings filter."""
    text = HEAD + bad + "\n"
    with pytest.raises(SettingsError) as err:
        resolve({}, {}, "backup", CTRL, text, "/etc/kvmsnap/sc.conf")
    _clean(str(err.value), S)
    assert "kvmsnap_snapcreator_config /etc/kvmsnap/sc.conf: line 3" in str(err.value)
    with pytest.raises(AnsibleFilterError) as ferr:
        settings_filter({}, {}, "backup", CTRL, text, "/etc/kvmsnap/sc.conf")
    _clean(str(ferr.value), S)
    _clean(repr(ferr.value), S)
    assert says in str(ferr.value)


def test_a_good_file_with_credentials_returns_and_warns_without_them():
    text = (HEAD + "NTAP_USERS=c1:admin/%s;c2:admin/%s\nNTAP_PWD_PROTECTION=%s\n%s=1\nFOO_UNKNOWN=%s\n"
            % (S, S, S, S, S))
    parsed = parse_config(text)
    _clean(repr(parsed), S)
    keys = [i["key"] for i in parsed["ignored"]]
    assert keys[:3] == ["APP_NAME", "NTAP_USERS", "NTAP_PWD_PROTECTION"] and keys[4] == "FOO_UNKNOWN"
    assert "not shown" in keys[3]  # a mixed-case word in key position may be a password: not echoed
    s = resolve({}, {}, "backup", CTRL, text, "/etc/kvmsnap/sc.conf")
    _clean(repr(s), S)
    assert any("NTAP_USERS (line 3) ignored" in w for w in s["warnings"])


def test_a_value_from_the_file_that_settings_refuse_is_named_by_key_and_line_not_shown():
    # SC_AGENT_TIMEOUT also sets the quiesce deadline, which must be at least 10 s: the settings check refuses it
    text = HEAD + "SC_AGENT_TIMEOUT=5\n"
    with pytest.raises(SettingsError) as err:
        resolve({}, {}, "backup", CTRL, text, "/etc/kvmsnap/sc.conf")
    assert "kvmsnap_quiesce_deadline" in str(err.value)
    assert "set by kvmsnap_snapcreator_config /etc/kvmsnap/sc.conf: SC_AGENT_TIMEOUT (line 3)" in str(err.value)


@pytest.mark.parametrize("uri", [
    "qemu+ssh://root:%s@kvm1.example.com/system" % S,
    "qemu+tcp://root:%s@kvm1.example.com/system" % S,
    "qemu+tls://:%s@kvm1.example.com/system" % S,
])
def test_a_password_in_the_libvirt_uri_is_refused_without_echo(uri):
    with pytest.raises(SettingsError) as err:
        resolve({"kvmsnap_libvirt_uri": uri}, {}, "backup", CTRL)
    _clean(str(err.value), S)
    assert "kvmsnap_libvirt_uri: carries a password" in str(err.value)


def test_a_libvirt_uri_with_a_user_and_port_is_accepted():
    s = resolve({"kvmsnap_libvirt_uri": "qemu+ssh://root@kvm1.example.com:2222/system"}, {}, "backup", CTRL)
    assert s["uri"] == "qemu+ssh://root@kvm1.example.com:2222/system"


@pytest.mark.parametrize("hostname", [
    "https://admin:%s@c1.example.com/api" % S,
    "admin:%s@c1.example.com" % S,
])
def test_a_url_with_credentials_as_ontap_hostname_is_refused_without_echo(hostname):
    ctrl = {"c1": dict(CTRL["c1"], ontap_hostname=hostname)}
    with pytest.raises(SettingsError) as err:
        resolve({}, {}, "backup", ctrl)
    _clean(str(err.value), S)
    assert "inventory host c1 (group ontap_controllers): ontap_hostname" in str(err.value)
