"""A credential injected as AWX / Ansible Automation Platform injects it into a job, for the ansible-runner tier.

inject(cred_type, inputs, private_data_dir) -> (env, safe_env) follows AWX's rules for a custom credential type:
- the template namespace holds each input with a value (an empty input stays undefined and renders as ''),
  boolean fields default to false, and `tower`;
- every `file` injector is rendered in a sandboxed Jinja environment and written to a new file (mode 0600) under
  <private_data_dir>/env/, even when it renders empty; `template` gives `{{ tower.filename }}`,
  `template.<name>` gives `{{ tower.filename.<name> }}`;
- every `env` injector is rendered with that namespace (values a job receives) and with the secret inputs
  replaced by '**********' (`safe_env`, what AWX stores and shows); names AWX reserves are skipped;
- `extra_vars` injectors are refused here: the kvmsnap credential type has none (secrets never go to extra vars,
  which a job's details show).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

HIDDEN = "*" * 10
# environment variables a credential may not set (AWX skips them)
RESERVED_ENV = frozenset(("VIRTUAL_ENV", "PATH", "PYTHONPATH", "JOB_ID", "INVENTORY_ID", "INVENTORY_SOURCE_ID",
                          "INVENTORY_UPDATE_ID", "AD_HOC_COMMAND_ID", "REST_API_URL", "REST_API_TOKEN",
                          "MAX_EVENT_RES", "CALLBACK_QUEUE", "CALLBACK_CONNECTION", "CACHE", "JOB_CALLBACK_DEBUG",
                          "INVENTORY_HOSTVARS", "AWX_HOST", "PROJECT_REVISION", "SUPERVISOR_CONFIG_PATH"))


def _namespaces(cred_type: dict, inputs: dict) -> tuple[dict[str, Any], dict[str, Any]]:
    fields = cred_type.get("inputs", {}).get("fields", [])
    secret = {f["id"] for f in fields if f.get("secret") is True}
    real: dict[str, Any] = {}
    safe: dict[str, Any] = {}
    for name, value in inputs.items():
        if isinstance(value, bool):
            real[name] = safe[name] = value
            continue
        if value:
            real[name] = value
            safe[name] = HIDDEN if name in secret else value
        elif name in secret:
            safe[name] = HIDDEN
    for field in fields:
        if field.get("type") == "boolean" and field["id"] not in inputs:
            real[field["id"]] = safe[field["id"]] = False
    return real, safe


def inject(cred_type: dict, inputs: dict, private_data_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The environment a job gets from a credential of CRED_TYPE with INPUTS, and its shown (safe) form."""
    injectors = cred_type.get("injectors") or {}
    real, safe = _namespaces(cred_type, inputs)
    sandbox = ImmutableSandboxedEnvironment()
    env_dir = Path(private_data_dir) / "env"
    env_dir.mkdir(parents=True, exist_ok=True)
    single = None
    named: dict[str, str] = {}
    for label, template in (injectors.get("file") or {}).items():
        text = sandbox.from_string(template).render(**real)
        handle, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        if "." in label:
            named[label.split(".", 1)[1]] = path
        else:
            single = path
    tower = SimpleNamespace(filename=single or SimpleNamespace(**named))
    real["tower"] = safe["tower"] = tower
    env: dict[str, str] = {}
    safe_env: dict[str, str] = {}
    for name, template in (injectors.get("env") or {}).items():
        if name in RESERVED_ENV:
            continue
        env[name] = sandbox.from_string(template).render(**real)
        safe_env[name] = sandbox.from_string(template).render(**safe)
    if injectors.get("extra_vars"):
        raise ValueError("this helper does not render extra_vars injectors: the kvmsnap credential type has none")
    return env, safe_env
