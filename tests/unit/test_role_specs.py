"""The roles' argument specs document every variable the roles read, the same way in every role."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = ("discover", "backup", "restore")
HOST_VARS = ("ontap_hostname", "ontap_port", "ontap_username", "ontap_password", "ontap_cert_file", "ontap_key_file",
             "ontap_transport", "ontap_validate_certs", "ontap_ca_path", "ontap_data_addresses")


def _spec(role: str) -> dict:
    return yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"][
        "main"]["options"]


def _settings_vars() -> set:
    text = (REPO / "plugins" / "plugin_utils" / "_settings.py").read_text()
    return set(re.findall(r"\b((?:kvmsnap|ontap)_[a-z_]+)\b", text)) - {"kvmsnap_"}


@pytest.mark.parametrize("role", ROLES)
def test_every_host_var_and_defaults_var_is_documented(role):
    spec = _spec(role)
    defaults = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())
    missing = sorted(set(defaults) - set(spec))
    assert not missing, "%s: in defaults/main.yml but not in meta/argument_specs.yml: %s" % (role, missing)
    for var in HOST_VARS + ("kvmsnap_target",):
        assert var in spec and spec[var]["description"], (role, var)
    assert spec["ontap_password"].get("no_log") is True
    for name, opt in spec.items():  # choices make a wrong value print the whole spec: the role checks them
        assert "choices" not in opt, (role, name)


def test_every_ontap_host_var_the_settings_read_is_documented():
    spec = _spec("backup")
    read = {v for v in _settings_vars() if v.startswith("ontap_")} - {"ontap_controllers"}  # the group
    assert read and read <= set(spec), sorted(read - set(spec))


def test_timeout_described_once_the_same_in_every_role():
    texts = {role: _spec(role)["kvmsnap_timeout"]["description"] for role in ROLES}
    assert len({yaml.safe_dump(t) for t in texts.values()}) == 1, texts
    text = " ".join(texts["backup"])
    assert "SnapMirror/SnapVault transfer" in text and "guest agent to answer" in text
    assert "bounds neither" in text  # and what it does not bound


def test_agent_timeout_reaches_the_fence_modules():
    spec = _spec("backup")
    defaults = yaml.safe_load((REPO / "roles" / "backup" / "defaults" / "main.yml").read_text())
    assert spec["kvmsnap_agent_timeout"]["default"] == defaults["kvmsnap_agent_timeout"] == 10
    tasks = []
    for name in ("fence_single.yml", "fence_shared.yml"):
        for block in yaml.safe_load((REPO / "roles" / "backup" / "tasks" / name).read_text()):
            for task in block.get("block", []) + block.get("always", []):
                for module in ("kvmsnap.core.vm_backup", "kvmsnap.core.vm_quiesce"):
                    if module in task:
                        tasks.append((name, task["name"], task[module].get("agent_timeout")))
    assert len(tasks) == 3, tasks  # vm_backup; vm_quiesce quiesced and released
    for name, task, value in tasks:
        assert value == "{{ discover_settings.agent_timeout }}", (name, task)


def test_restore_policy_says_what_it_does():
    text = " ".join(_spec("restore")["kvmsnap_policy"]["description"])
    assert "Not used by a restore" in text and "kvmsnap_restore_snapshot" in text


def test_check_backups_role_documents_its_variables():
    spec = _spec("check_backups")
    defaults = yaml.safe_load((REPO / "roles" / "check_backups" / "defaults" / "main.yml").read_text())
    assert set(defaults) == {"kvmsnap_check_max_age_hours", "kvmsnap_check_report"} <= set(spec)
    assert spec["kvmsnap_check_max_age_hours"]["default"] == defaults["kvmsnap_check_max_age_hours"] == 26
    assert (REPO / "playbooks" / "check_backups.yml").is_file()


def test_verify_role_documents_its_variables_with_the_settings_defaults():
    from ansible_collections.kvmsnap.core.plugins.plugin_utils._settings import DEFAULTS
    spec = _spec("verify")
    defaults = yaml.safe_load((REPO / "roles" / "verify" / "defaults" / "main.yml").read_text())
    assert set(defaults) == set(spec) == {k for k in DEFAULTS if k.startswith("kvmsnap_verify_")}
    for name, value in defaults.items():
        assert spec[name]["default"] == value == DEFAULTS[name], name
    assert (REPO / "playbooks" / "verify.yml").is_file()


def test_the_roles_build_every_ontap_connection_with_controller_conn():
    """One place for the ONTAP connection options (a copy once lacked cert_file/key_file, another retries)."""
    tasks = "".join(p.read_text() for p in sorted((REPO / "roles").glob("*/tasks/*.yml")))
    assert "ontap_hostname" not in tasks and "ontap_password" not in tasks and "ontap_cert_file" not in tasks
    assert tasks.count("kvmsnap.core.controller_conn(hostvars, discover_settings.retries)") >= 10


def test_controller_conn_takes_every_connection_var_and_the_retries():
    from ansible_collections.kvmsnap.core.plugins.filter.roles import controller_conn, controller_conns
    hostvars = {"c1": {"ontap_hostname": "10.0.0.1", "ontap_port": 8443, "ontap_cert_file": "/c.pem",
                       "ontap_key_file": "/k.pem", "ontap_ca_path": "/ca.pem", "ontap_validate_certs": True,
                       "ontap_transport": "zapi", "ontap_username": "", "ontap_data_addresses": ["10.0.1.1"]},
                "c2": {"ontap_username": "admin", "ontap_password": "pw"}}
    assert controller_conn("c1", hostvars, 5) == {"hostname": "10.0.0.1", "port": 8443, "cert_file": "/c.pem",
                                                  "key_file": "/k.pem", "ca_path": "/ca.pem", "validate_certs": True,
                                                  "transport": "zapi", "retries": 5}
    assert controller_conn("c2", hostvars) == {"hostname": "c2", "username": "admin", "password": "pw", "retries": 3}
    assert controller_conns(["c2"], hostvars, "2") == [{"name": "c2", "hostname": "c2", "username": "admin",
                                                        "password": "pw", "retries": 2}]


@pytest.mark.parametrize("role", ROLES + ("check_backups",))
def test_role_defaults_and_specs_agree_with_the_settings_defaults(role):
    """Each default is kept once, in plugin_utils/_settings.DEFAULTS; a role's defaults/main.yml and argument spec
    repeat it as the literal Ansible needs, and must say the same."""
    from ansible_collections.kvmsnap.core.plugins.plugin_utils._settings import DEFAULTS
    spec = _spec(role)
    defaults = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())
    for name, value in defaults.items():
        assert name in DEFAULTS and DEFAULTS[name] == value, (role, name, value, DEFAULTS.get(name))
        assert spec[name].get("default") == value, (role, name, spec[name].get("default"), value)
    for name, opt in spec.items():
        if name.startswith("kvmsnap_") and name in DEFAULTS:
            assert name in defaults and opt.get("default") == DEFAULTS[name], (role, name)


def test_every_settings_default_is_a_default_of_a_role():
    from ansible_collections.kvmsnap.core.plugins.plugin_utils._settings import DEFAULTS
    in_roles = {}
    for role in ROLES + ("check_backups", "verify"):
        in_roles.update(yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text()))
    assert set(DEFAULTS) == set(in_roles), sorted(set(DEFAULTS) ^ set(in_roles))


def test_every_filter_is_documented_under_its_function_name():
    from ansible_collections.kvmsnap.core.plugins.filter.roles import FilterModule
    filters = FilterModule().filters()
    sidecars = {p.stem for p in (REPO / "plugins" / "filter").glob("*.yml")}
    assert sidecars == set(filters), sorted(sidecars ^ set(filters))
    for name, fn in filters.items():
        assert fn.__name__ == name, (name, fn.__name__)
        doc = yaml.safe_load((REPO / "plugins" / "filter" / ("%s.yml" % name)).read_text())
        assert doc["DOCUMENTATION"]["name"] == name and "kvmsnap.core.%s" % name in doc["EXAMPLES"]
