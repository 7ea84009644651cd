"""version_added follows one rule (docs/dev/publishing.md#version_added).

Every module, filter and role entry point says in which release it appeared: antsibull-changelog lists a plugin
or role as new in the first release only when its version_added is that release's version, and antsibull-docs shows
it on every page. Everything of the first public release says 1.0.0. An option carries its own version_added only
when it came later than its plugin (then it is newer than the plugin's); doc fragments carry none, since the plugin
that uses a fragment says when it appeared.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FIRST_PUBLIC = (1, 0, 0)
SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def doc_string(path: Path, name: str) -> dict[str, Any]:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return yaml.safe_load(ast.literal_eval(node.value)) or {}
    raise AssertionError(f"{path.relative_to(REPO)} has no {name}")


def documented() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((REPO / "plugins" / "modules").glob("*.py")):
        yield f"module {path.stem}", doc_string(path, "DOCUMENTATION")
    for path in sorted((REPO / "plugins" / "filter").glob("*.yml")):
        yield f"filter {path.stem}", yaml.safe_load(path.read_text())["DOCUMENTATION"]
    for path in sorted((REPO / "roles").glob("*/meta/argument_specs.yml")):
        specs = yaml.safe_load(path.read_text())["argument_specs"]
        for entry, spec in sorted(specs.items()):
            yield f"role {path.parts[-3]} ({entry})", spec


DOCUMENTED = list(documented())
NAMES = [what for what, _doc in DOCUMENTED]


def version(text: object, what: str) -> tuple[int, int, int]:
    match = SEMVER.match(str(text))
    assert match, f"{what}: version_added {text!r} is not X.Y.Z (a quoted or unquoted 1.0.0)"
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def options(spec: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, option in (spec.get("options") or {}).items():
        yield prefix + name, option
        yield from options(option, f"{prefix}{name}.")
        for key in ("contains",):
            if isinstance(option.get(key), dict):
                yield from options({"options": option[key]}, f"{prefix}{name}.")


def test_everything_public_is_documented_here() -> None:
    kinds = {what.split()[0] for what in NAMES}
    assert kinds == {"module", "filter", "role"}
    assert len([w for w in NAMES if w.startswith("module")]) == len(list((REPO / "plugins" / "modules").glob("*.py")))


@pytest.mark.parametrize(("what", "doc"), DOCUMENTED, ids=NAMES)
def test_every_plugin_and_role_says_when_it_appeared(what: str, doc: dict[str, Any]) -> None:
    assert "version_added" in doc, f"{what} has no version_added: the changelog would not list it as new"
    assert version(doc["version_added"], what) >= FIRST_PUBLIC, (
        f"{what}: version_added {doc['version_added']} is before the first public release 1.0.0")


@pytest.mark.parametrize(("what", "doc"), DOCUMENTED, ids=NAMES)
def test_an_option_says_when_only_if_it_came_later(what: str, doc: dict[str, Any]) -> None:
    plugin = version(doc["version_added"], what)
    for name, option in options(doc):
        if "version_added" in option:
            assert version(option["version_added"], f"{what} option {name}") > plugin, (
                f"{what} option {name}: version_added {option['version_added']} is not later than the "
                f"{what.split()[0]}'s own {doc['version_added']}; an option that came with it carries none")


def test_doc_fragments_carry_no_version_added() -> None:
    for path in sorted((REPO / "plugins" / "doc_fragments").glob("*.py")):
        assert "version_added" not in path.read_text(), f"{path.relative_to(REPO)}: the plugins using it say when"
