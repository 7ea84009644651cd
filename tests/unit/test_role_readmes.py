"""Each role's README.md is one a user can act on, and agrees with the role's meta/argument_specs.yml.

galaxy-importer refuses a collection whose role has no README. What a README says must hold: every variable it
names is a variable of the collection, every default in its tables is the spec's default, and its example
playbook passes the role's argument spec (the check ansible-core runs when the role starts).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.kvmsnap.core.plugins.plugin_utils._settings import DEFAULTS

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())
SECTIONS = ("Inventory", "Variables", "Example playbook", "What it reports", "More")
# names in the READMEs that are not variables: the inventory group and the set_stats keys
NOT_VARIABLES = {"ontap_controllers", "kvmsnap_discover", "kvmsnap_backup", "kvmsnap_restore", "kvmsnap_verify"}
ROW = re.compile(r"^\| (`[a-z_]+`(?:, `[a-z_]+`)*) \| `([^`]*)`", re.M)


def readme(role: str) -> str:
    path = REPO / "roles" / role / "README.md"
    assert path.is_file(), f"roles/{role} has no README.md (galaxy-importer: 'No role readme found')"
    return path.read_text()


def spec(role: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]


def known_variables() -> set[str]:
    names = set(DEFAULTS)
    for role in ROLES:
        names |= set(spec(role)["options"])
    return names


def test_there_are_roles():
    assert {"discover", "backup", "restore", "check_backups"} <= set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_readme_has_the_sections_a_user_needs(role):
    text = readme(role)
    assert text.startswith(f"# kvmsnap.core.{role}\n"), "the title is the role's FQCN"
    missing = [s for s in SECTIONS if f"\n## {s}\n" not in text]
    assert not missing, f"roles/{role}/README.md lacks the sections {missing}"
    assert "meta/argument_specs.yml" in text and f"ansible-doc -t role kvmsnap.core.{role}" in text


@pytest.mark.parametrize("role", ROLES)
def test_every_variable_named_exists(role):
    names = set(re.findall(r"\b((?:kvmsnap|ontap)_[a-z_]+[a-z])\b", readme(role)))
    unknown = sorted(names - known_variables() - NOT_VARIABLES)
    assert not unknown, f"roles/{role}/README.md names variables no role has: {unknown}"


@pytest.mark.parametrize("role", ROLES)
def test_defaults_in_the_tables_are_the_specs(role):
    options = spec(role)["options"]
    rows = ROW.findall(readme(role))
    assert rows, f"roles/{role}/README.md has no variable table"
    wrong = []
    for names, shown in rows:
        for name in re.findall(r"`([a-z_]+)`", names):
            if name not in options:
                wrong.append(f"{name}: not an option of the role's argument spec")
            elif yaml.safe_load(shown) != options[name].get("default"):
                wrong.append(f"{name}: README says {shown!r}, the spec {options[name].get('default')!r}")
    assert not wrong, f"roles/{role}/README.md:\n" + "\n".join(wrong)


@pytest.mark.parametrize("role", ROLES)
def test_example_playbook_passes_the_argument_spec(role):
    blocks = re.findall(r"^```yaml\n(.*?)^```", readme(role), re.S | re.M)
    assert len(blocks) == 1, "one example playbook"
    plays = yaml.safe_load(blocks[0])
    entries = [r for play in plays for r in play.get("roles", [])]
    assert [e["role"] for e in entries] == [f"kvmsnap.core.{role}"]
    assert plays[0]["hosts"] == "kvm_hosts"
    given = entries[0].get("vars", {})
    assert given, "the example shows the role's own variables"
    result = ArgumentSpecValidator(spec(role)["options"]).validate(given)
    assert not result.error_messages, result.error_messages
    assert not result.unsupported_parameters, result.unsupported_parameters
