"""The shipped AWX/AAP credential type (playbooks/files/awx/credential_type.yml) keeps AWX's rules for custom types
and injects exactly the variables the roles read; playbooks/awx_setup.yml creates it from that file (one source)
and its surveys ask for role variables that exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from jinja2 import Environment, meta

from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import validate_backup_policy
from ansible_collections.kvmsnap.core.plugins.plugin_utils import _settings

REPO = Path(__file__).resolve().parents[2]
TYPE_FILE = REPO / "playbooks" / "files" / "awx" / "credential_type.yml"
SETUP = REPO / "playbooks" / "awx_setup.yml"
NAME_RE = re.compile(r"^[a-zA-Z_]+[a-zA-Z0-9_]*$")
# what AWX refuses in a custom type's env injectors (besides names starting with ANSIBLE_)
RESERVED = {"VIRTUAL_ENV", "PATH", "PYTHONPATH", "JOB_ID", "INVENTORY_ID", "INVENTORY_SOURCE_ID", "AWX_HOST",
            "INVENTORY_UPDATE_ID", "AD_HOC_COMMAND_ID", "REST_API_URL", "REST_API_TOKEN", "MAX_EVENT_RES",
            "CALLBACK_QUEUE", "CALLBACK_CONNECTION", "CACHE", "JOB_CALLBACK_DEBUG", "INVENTORY_HOSTVARS",
            "PROJECT_REVISION", "SUPERVISOR_CONFIG_PATH"}


def _type() -> dict:
    return yaml.safe_load(TYPE_FILE.read_text())


def _setup_tasks() -> list:
    return yaml.safe_load(SETUP.read_text())[0]["tasks"]


def test_inputs_follow_awx_rules_and_secrets_are_marked():
    ct = _type()
    assert ct["kind"] in ("cloud", "net") and ct["name"] and ct["description"]
    fields = ct["inputs"]["fields"]
    ids = [f["id"] for f in fields]
    assert len(ids) == len(set(ids)) and all(NAME_RE.match(i) for i in ids)
    for field in fields:
        assert field.get("type", "string") in ("string", "boolean") and field["label"], field
        assert set(field) <= {"id", "type", "label", "help_text", "secret", "multiline", "format", "choices",
                              "ask_at_runtime"}, field
    assert set(ct["inputs"].get("required", [])) <= set(ids)
    secret = {f["id"] for f in fields if f.get("secret") is True}
    assert secret == {"password", "accounts"}
    assert next(f for f in fields if f["id"] == "accounts")["multiline"] is True


def test_injectors_are_env_and_file_only_and_match_what_the_roles_read():
    ct = _type()
    injectors = ct["injectors"]
    assert set(injectors) == {"env", "file"}  # never extra_vars: a job's details show them
    env = injectors["env"]
    assert set(env) == {_settings.ENV_USERNAME, _settings.ENV_PASSWORD, _settings.ENV_ACCOUNTS}
    for name in env:
        assert NAME_RE.match(name) and not name.startswith("ANSIBLE_") and name not in RESERVED
    labels = list(injectors["file"])
    assert all(label == "template" or re.match(r"^template\.[a-zA-Z_]+[a-zA-Z0-9_]*$", label) for label in labels)
    ids = {f["id"] for f in ct["inputs"]["fields"]}
    jinja = Environment()
    for template in list(env.values()) + list(injectors["file"].values()):
        assert meta.find_undeclared_variables(jinja.parse(template)) <= ids | {"tower"}, template
    for template in env.values():
        for ref in re.findall(r"tower\.filename\.(\w+)", template):
            assert "template.%s" % ref in labels, template
    # the secrets go through their own variable or the file: each secret field is used exactly once
    used = " ".join(list(env.values()) + list(injectors["file"].values()))
    for field in ("password", "accounts"):
        assert len(re.findall(r"\{\{\s*%s\s*\}\}" % field, used)) == 1


def test_setup_playbook_creates_the_type_from_the_shipped_file():
    play = yaml.safe_load(SETUP.read_text())[0]
    assert "lookup('ansible.builtin.file', 'files/awx/credential_type.yml')" in play["vars"]["awx_setup_credential_type"]
    task = next(t for t in _setup_tasks() if "awx.awx.credential_type" in t)["awx.awx.credential_type"]
    for key in ("name", "kind", "inputs", "injectors", "description"):
        assert task[key] == "{{ awx_setup_credential_type.%s }}" % key
    cred = next(t for t in _setup_tasks() if "awx.awx.credential" in t)
    assert cred["no_log"] is True
    names = [t[m]["name"] for t in _setup_tasks() for m in t if m.startswith("awx.awx.")]
    assert {"{{ kvmsnap_awx_prefix }} %s" % jt for jt in ("discover", "backup", "restore", "nightly backup")} <= set(
        names)


def test_surveys_ask_for_role_variables():
    tasks = {t["awx.awx.job_template"]["playbook"].split(".")[-1].rstrip(" }"): t["awx.awx.job_template"]
             for t in _setup_tasks() if "awx.awx.job_template" in t}
    assert set(tasks) == {"discover", "backup", "restore"}
    for role in ("backup", "restore"):
        spec = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
        options = spec["argument_specs"]["main"]["options"]
        survey = tasks[role]["survey_spec"]["spec"]
        assert tasks[role]["survey_enabled"] is True and survey
        for question in survey:
            assert question["variable"] in options, (role, question["variable"])
            assert question["type"] in ("text", "multiplechoice") and question["question_name"]
    backup_vars = [q["variable"] for q in tasks["backup"]["survey_spec"]["spec"]]
    restore_vars = [q["variable"] for q in tasks["restore"]["survey_spec"]["spec"]]
    assert backup_vars == ["kvmsnap_policy"]
    assert {"kvmsnap_restore_vms", "kvmsnap_restore_snapshot"} <= set(restore_vars)
    policies = yaml.safe_load(SETUP.read_text())[0]["vars"]["kvmsnap_awx_policies"]
    assert all(validate_backup_policy(p) == p for p in policies)
