"""The vm_* modules' documented options (with their doc fragments) match their argument specs; one range per option."""

from __future__ import annotations

import importlib
import re

import pytest
import yaml

from ansible_collections.kvmsnap.core.plugins.module_utils._defaults import LIMITS
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_args import connection_argument_spec
from ansible_collections.kvmsnap.core.plugins.plugin_utils._settings import SettingsError, resolve

VM_MODULES = ("vm_info", "vm_quiesce", "vm_backup", "vm_restore")


def _fragment(name):
    slug, _dot, variable = name.partition(".")
    module = importlib.import_module("ansible_collections.kvmsnap.core.plugins.doc_fragments." + slug)
    return yaml.safe_load(getattr(module.ModuleDocFragment, variable.upper() or "DOCUMENTATION"))


def documented_options(module_name):
    """The module's options after its doc fragments are merged in, as ansible-doc merges them (first one wins)."""
    module = importlib.import_module("ansible_collections.kvmsnap.core.plugins.modules." + module_name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    options = dict(doc.get("options") or {})
    for name in doc.get("extends_documentation_fragment") or []:
        slug = name.split("kvmsnap.core.", 1)[1]
        for option, entry in (_fragment(slug).get("options") or {}).items():
            options[option] = dict(entry, **options.get(option, {}))
    return options


def argument_spec(module_name):
    module = importlib.import_module("ansible_collections.kvmsnap.core.plugins.modules." + module_name)
    spec = module.ARGUMENT_SPEC
    if "kvmsnap.core.ontap" in yaml.safe_load(module.DOCUMENTATION).get("extends_documentation_fragment", []):
        spec = connection_argument_spec(**spec)
    return spec


@pytest.mark.parametrize("module_name", VM_MODULES)
def test_documented_options_are_the_spec(module_name):
    documented, spec = documented_options(module_name), argument_spec(module_name)
    assert sorted(documented) == sorted(spec)
    for option, entry in spec.items():
        doc = documented[option]
        assert doc.get("type", "str") == entry.get("type", "str"), option
        assert doc.get("default") == entry.get("default"), "%s: documented default %r, spec default %r" % (
            option, doc.get("default"), entry.get("default"))
        assert doc.get("choices") == entry.get("choices"), option
        assert bool(doc.get("required")) == bool(entry.get("required")), option


@pytest.mark.parametrize("module_name", VM_MODULES)
def test_documented_ranges_are_the_limits(module_name):
    """Every option with a range (LIMITS) names that range in its description, the same in every module."""
    for option, doc in documented_options(module_name).items():
        if option in LIMITS:
            text = " ".join(doc["description"]) if isinstance(doc["description"], list) else doc["description"]
            low, high = LIMITS[option]
            assert re.search(r"\b%d-%d\b" % (low, high), text), "%s %s: description does not say %d-%d" % (
                module_name, option, low, high)


def test_fence_options_are_one_spec():
    """vm_quiesce and vm_backup take the fence options from one spec, so their defaults cannot drift apart."""
    quiesce, backup = argument_spec("vm_quiesce"), argument_spec("vm_backup")
    for option in ("mode", "deadline", "state_dir", "agent_timeout", "allow_crash_consistent", "uri"):
        assert quiesce[option] == backup[option], option
    # vm_backup's retries is the ONTAP connection's (with its KVMSNAP_ONTAP_RETRIES fallback), for both sides
    assert quiesce["retries"]["default"] == backup["retries"]["default"]


@pytest.mark.parametrize("variable, option, modules", [
    ("kvmsnap_quiesce_deadline", "deadline", ("vm_quiesce", "vm_backup")),
    ("kvmsnap_retries", "retries", VM_MODULES),
    ("kvmsnap_agent_timeout", "agent_timeout", ("vm_quiesce", "vm_backup")),
    ("kvmsnap_timeout", "confirm_grace", ("vm_backup",)),
    ("kvmsnap_timeout", "verify_timeout", ("vm_restore",)),
    ("kvmsnap_shutdown_timeout", "shutdown_timeout", ("vm_restore",)),
])
def test_every_role_value_is_accepted_by_the_modules(variable, option, modules):
    """The roles pass their variable to these modules as OPTION: every value the roles accept, each module takes.

    The backup role accepted kvmsnap_quiesce_deadline up to 86400 and handed it to vm_backup, which stopped at 3600;
    kvmsnap_retries 0-10 went to vm_quiesce and vm_restore, which allowed 0-20 (one range for one value);
    kvmsnap_timeout up to 86400 went to vm_restore as verify_timeout, which stopped at 3600."""
    low, high = LIMITS[option]
    accepted = []
    for value in (low, high, low - 1, high + 1):
        if not _accepted_by_role(variable, value):
            continue
        accepted.append(value)
        assert low <= value <= high, "%s=%r passes the role but not the modules' %s range" % (variable, value, option)
    # the role's quiesce deadline tops at a day; the module's deadline is also the roles' lock expiry (longer)
    assert high in accepted or (option == "deadline" and 86400 in _accepted_by_role(variable, 86400))
    for module_name in modules:
        text = documented_options(module_name)[option]["description"]
        assert "%d-%d" % (low, high) in " ".join(text if isinstance(text, list) else [text]), module_name


def _accepted_by_role(variable, value):
    try:
        resolve({"kvmsnap_datastores": [{"path": "/ds1", "controller": "c1", "svm": "svm1", "volume": "vol1"}],
                 variable: value}, {}, "backup",
                {"c1": {"ontap_hostname": "10.0.0.1", "ontap_username": "u", "has_password": True}})
    except SettingsError:
        return []
    return [value]


@pytest.mark.parametrize("role", ["backup", "restore"])
def test_lock_expiry_the_roles_compute_fits_the_deadline_range(role):
    """The roles lock their VMs with vm_quiesce state=locked for a deadline they compute from the settings (fence or
    shutdown plus ONTAP timeouts); at the largest settings they accept, that deadline still lies in the module's range
    (it could reach 178,200 s while the module stopped at 86,400)."""
    import pathlib

    import jinja2

    tasks = (pathlib.Path(__file__).parents[2] / "roles" / role / "tasks" / "preflight.yml").read_text()
    expr = re.search(r"state: locked\n(?:.*\n)*?\s+deadline: \"(\{\{.*\}\})\"", tasks).group(1)
    biggest = resolve({"kvmsnap_datastores": [{"path": "/ds1", "controller": "c1", "svm": "svm1", "volume": "vol1"}],
                       "kvmsnap_quiesce_deadline": 86400, "kvmsnap_timeout": 86400, "kvmsnap_shutdown_timeout": 3600,
                       "kvmsnap_restore_vms": ["vm1"]},
                      {}, role, {"c1": {"ontap_hostname": "10.0.0.1", "ontap_username": "u", "has_password": True}})
    deadline = int(jinja2.Template(expr).render(discover_settings=biggest))
    low, high = LIMITS["deadline"]
    assert deadline > 86400 and low <= deadline <= high, (role, expr, deadline)
