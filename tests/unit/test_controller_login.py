"""The ONTAP login of each controller: host vars, then the credential's per-controller accounts file, then its
default account (KVMSNAP_ONTAP_USERNAME/PASSWORD); errors name the controller and every way, never a secret."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kvmsnap.core.plugins.filter.roles import controller_conn, controller_conns, copy_controller_conn
from ansible_collections.kvmsnap.core.plugins.plugin_utils._settings import (
    ENV_ACCOUNTS,
    ENV_PASSWORD,
    ENV_USERNAME,
    SettingsError,
    controller_login,
    read_accounts,
    resolve,
)

DS = [{"path": "/ds1", "controller": "c1", "svm": "svm1", "volume": "vol1"},
      {"path": "/ds2", "controller": "c2", "svm": "svm1", "volume": "vol2"}]
SECRETS = ("Pw-accounts-c1", "Pw-default", "Pw-hostvars")


def accounts_file(tmp_path, text: str) -> dict:
    path = tmp_path / "accounts.yml"
    path.write_text(text)
    return {ENV_ACCOUNTS: str(path)}


def no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_order_host_vars_then_accounts_file_then_default(tmp_path):
    env = dict(accounts_file(tmp_path, "c1: {username: acc1, password: Pw-accounts-c1}\n"),
               **{ENV_USERNAME: "dflt", ENV_PASSWORD: "Pw-default"})
    hv_login = controller_login("c1", {"ontap_username": "hv", "ontap_password": "Pw-hostvars"}, env)
    assert (hv_login["source"], hv_login["username"], hv_login["password"]) == ("host vars", "hv", "Pw-hostvars")
    acc = controller_login("c1", {"ontap_hostname": "c1.example.com"}, env)
    assert (acc["username"], acc["password"]) == ("acc1", "Pw-accounts-c1")
    assert acc["source"] == "accounts file (KVMSNAP_ONTAP_ACCOUNTS_FILE)"
    dflt = controller_login("c2", {"ontap_username": ""}, env)  # an empty host var does not count
    assert (dflt["username"], dflt["password"]) == ("dflt", "Pw-default")
    assert dflt["source"] == "default account (KVMSNAP_ONTAP_USERNAME)"
    cert = controller_login("c2", {"ontap_cert_file": "/c.pem", "ontap_key_file": "/k.pem"}, env)
    assert cert == {"source": "host vars (certificate)", "username": None, "password": None}


def test_no_login_names_the_controller_and_every_way():
    with pytest.raises(SettingsError) as err:
        controller_login("c7", {"ontap_hostname": "c7.example.com"}, {})
    text = str(err.value)
    assert text.startswith("inventory host c7 (group ontap_controllers): no ONTAP login")
    for way in ("ontap_username and ontap_password", "ontap_cert_file and ontap_key_file",
                "an entry c7 in the accounts file named by KVMSNAP_ONTAP_ACCOUNTS_FILE",
                "KVMSNAP_ONTAP_USERNAME and KVMSNAP_ONTAP_PASSWORD", "docs/awx.md"):
        assert way in text
    with pytest.raises(SettingsError, match="c7 .*KVMSNAP_ONTAP_USERNAME is set without KVMSNAP_ONTAP_PASSWORD"):
        controller_login("c7", {}, {ENV_USERNAME: "dflt"})


@pytest.mark.parametrize("text,match", [
    ("c1: [Pw-accounts-c1\n", r"not valid YAML \(line \d\).*content not shown"),
    ("- Pw-accounts-c1\n", "not a mapping"),
    ("c1: Pw-accounts-c1\n", "entry 'c1': not a mapping"),
    ("c1: {username: a, password: Pw-accounts-c1, pasword: Pw-default}\n", r"entry 'c1': unknown key\(s\) 'pasword'"),
    ("c1: {username: a, Pw-default: x, password: Pw-accounts-c1}\n", "unknown key.*'Pw-default'|unknown key"),
    ("c1: {username: a}\n", "entry 'c1': password is missing"),
    ("'Pw-hostvars with spaces': {username: a, password: b}\n", r"entry \(a key not shown\): not an inventory host"),
])
def test_a_bad_accounts_file_is_named_without_its_content(tmp_path, text, match):
    env = accounts_file(tmp_path, text)
    with pytest.raises(SettingsError, match=match) as err:
        read_accounts(env)
    assert str(tmp_path / "accounts.yml") in str(err.value)
    for secret in ("Pw-accounts-c1", "Pw-hostvars"):
        assert secret not in str(err.value)


def test_accounts_file_unset_empty_or_missing(tmp_path):
    assert read_accounts({}) == {}
    assert read_accounts(accounts_file(tmp_path, "")) == {}  # AWX writes the file even when the field is empty
    assert read_accounts(accounts_file(tmp_path, "# nothing\n")) == {}
    with pytest.raises(SettingsError, match="KVMSNAP_ONTAP_ACCOUNTS_FILE /nonexistent.yml: cannot be read"):
        read_accounts({ENV_ACCOUNTS: "/nonexistent.yml"})
    json_text = '{"c1": {"username": "a", "password": "b"}, "c2": {"username": "c", "password": "d"}}'
    assert read_accounts(accounts_file(tmp_path, json_text)) == {"c1": {"username": "a", "password": "b"},
                                                                 "c2": {"username": "c", "password": "d"}}


def test_settings_accept_controllers_without_login_host_vars(tmp_path):
    env = dict(accounts_file(tmp_path, "c1: {username: acc1, password: Pw-accounts-c1}\n"
                                       "c9: {username: x, password: y}\n"),
               **{ENV_USERNAME: "dflt", ENV_PASSWORD: "Pw-default"})
    ctrl = {"c1": {"ontap_hostname": "10.0.0.1"}, "c2": {"ontap_hostname": "c2.example.com"}}
    s = resolve({"kvmsnap_datastores": DS}, {}, "backup", ctrl, env=env)
    assert s["controllers"]["c1"]["login"] == "accounts file (KVMSNAP_ONTAP_ACCOUNTS_FILE)"
    assert s["controllers"]["c2"]["login"] == "default account (KVMSNAP_ONTAP_USERNAME)"
    assert any("names c9, which is not a host of the inventory group ontap_controllers" in w for w in s["warnings"])
    no_secret(repr(s))
    with pytest.raises(SettingsError, match="inventory host c2 .*no ONTAP login") as err:
        resolve({"kvmsnap_datastores": DS}, {}, "backup", ctrl, env={k: v for k, v in env.items()
                                                                     if k == ENV_ACCOUNTS})
    no_secret(str(err.value))


def test_controller_conn_gives_the_resolved_login(tmp_path, monkeypatch):
    env = dict(accounts_file(tmp_path, "c1: {username: acc1, password: Pw-accounts-c1}\n"),
               **{ENV_USERNAME: "dflt", ENV_PASSWORD: "Pw-default"})
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    hostvars = {"c1": {"ontap_hostname": "10.0.0.1", "ontap_port": 8443},
                "c2": {"ontap_transport": "zapi"},
                "c3": {"ontap_username": "hv", "ontap_password": "Pw-hostvars"},
                "c4": {"ontap_cert_file": "/c.pem", "ontap_key_file": "/k.pem"}}
    assert controller_conn("c1", hostvars) == {"hostname": "10.0.0.1", "port": 8443, "retries": 3,
                                               "username": "acc1", "password": "Pw-accounts-c1"}
    assert controller_conn("c2", hostvars, 1) == {"hostname": "c2", "transport": "zapi", "retries": 1,
                                                  "username": "dflt", "password": "Pw-default"}
    assert controller_conn("c3", hostvars)["password"] == "Pw-hostvars"
    cert = controller_conn("c4", hostvars)
    assert "password" not in cert and "username" not in cert and cert["cert_file"] == "/c.pem"
    assert [c["username"] for c in controller_conns(["c1", "c2", "c3"], hostvars)] == ["acc1", "dflt", "hv"]
    monkeypatch.delenv(ENV_USERNAME)
    with pytest.raises(AnsibleFilterError, match="kvmsnap pre-flight: inventory host c2 .*no ONTAP login") as err:
        controller_conn("c2", hostvars)
    no_secret(str(err.value))


def test_copy_controller_conn_only_for_a_copy_on_another_controller(monkeypatch):
    monkeypatch.setenv(ENV_USERNAME, "dflt")
    monkeypatch.setenv(ENV_PASSWORD, "Pw-default")
    hostvars = {"c1": {"ontap_hostname": "10.0.0.1"}, "c2": {"ontap_hostname": "10.0.0.2"}}
    assert copy_controller_conn({"controller": "c1", "copy_controller": "c2"}, hostvars, 2) == \
        {"hostname": "10.0.0.2", "retries": 2, "username": "dflt", "password": "Pw-default"}
    # the copy on the volume's own controller, or no copy at all: the role leaves the option out
    assert copy_controller_conn({"controller": "c1", "copy_controller": "c1"}, hostvars) is None
    assert copy_controller_conn({"controller": "c1"}, hostvars) is None
