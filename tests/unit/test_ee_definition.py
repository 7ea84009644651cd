"""The execution environment: what runs in it, what it declares, and the context ansible-builder makes of it.

Which code runs on the control node (the EE in AWX/AAP) is read from the roles and playbooks: a module a task
runs with ``delegate_to: localhost`` (or in a play on localhost) runs there, every other one on the KVM hosts;
the filter plugins always run there. From those entry points the test follows the collection's own imports
(module_utils, plugin_utils) and collects every third-party package they import: each one must be declared in
meta/ee-requirements.txt, unless it is a KVM-host library whose import is guarded (libvirt-python: the
controller imports ``_libvirt`` for a constant only), and the controller code is then imported with those
libraries blocked. Every declared package must be one the controller side imports.

Then ``ansible-builder create`` (requirements-dev.txt's pin) runs on the repository's execution-environment.yml
with the tarball of this checkout, and the test runs the two build stages that need no container the way the
generated Containerfile runs them: the galaxy stage (``ansible-galaxy collection install -r requirements.yml``
in the context) and the builder stage's introspection (the context's own introspect.py on the installed
collections), whose pip and bindep lists must be exactly what meta/ declares. No image is built.
"""

from __future__ import annotations

import ast
import filecmp
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

import pytest
import yaml
from ansible_builder.ee_schema import validate_schema
from helpers.galaxy_build import REPO, build_tarball, galaxy_meta, tool
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

COLLECTION_PKG = "ansible_collections.kvmsnap.core."
PLUGINS = REPO / "plugins"
META_EE = REPO / "meta" / "execution-environment.yml"
EE_DEFINITION = REPO / "execution-environment.yml"
# Libraries of the KVM hosts: the controller side may import modules that name them, but only behind a guard.
KVM_HOST_ONLY = {"libvirt-python"}
# Plugin types Ansible runs on the controller (besides modules delegated to it).
CONTROLLER_PLUGIN_DIRS = ("filter", "action", "lookup", "callback", "inventory", "vars", "test", "cache", "connection")


# --- what runs where -------------------------------------------------------------------------------------

def _load_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _module_of(task: Dict[str, Any]) -> Optional[str]:
    for key in task:
        if key.startswith("kvmsnap.core."):
            return key[len("kvmsnap.core."):]
    return None


def _walk(tasks: Any, delegate: Optional[str], out: List[Tuple[str, Optional[str], str]], where: str) -> None:
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        here = task.get("delegate_to", delegate)
        for section in ("block", "rescue", "always"):
            if section in task:
                _walk(task[section], here, out, where)
        module = _module_of(task)
        if module:
            out.append((module, here, "%s: %s" % (where, task.get("name", module))))


def module_runs() -> List[Tuple[str, Optional[str], str]]:
    """(module, delegate_to, where) for every kvmsnap.core module a role or playbook task runs."""
    out: List[Tuple[str, Optional[str], str]] = []
    for path in sorted((REPO / "roles").glob("*/tasks/*.yml")) + sorted((REPO / "roles").glob("*/handlers/*.yml")):
        _walk(_load_yaml(path), None, out, str(path.relative_to(REPO)))
    for path in sorted((REPO / "playbooks").glob("*.yml")):
        for play in _load_yaml(path) or []:
            if not isinstance(play, dict):
                continue
            local = "localhost" if play.get("hosts") in ("localhost", "127.0.0.1") else None
            for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                _walk(play.get(section), local, out, str(path.relative_to(REPO)))
    return out


def _is_local(delegate: Optional[str]) -> bool:
    return delegate is not None and str(delegate).strip() in ("localhost", "127.0.0.1")


def controller_modules() -> Set[str]:
    return {module for module, delegate, _where in module_runs() if _is_local(delegate)}


def controller_entry_files() -> List[Path]:
    files = [PLUGINS / "modules" / ("%s.py" % module) for module in sorted(controller_modules())]
    for kind in CONTROLLER_PLUGIN_DIRS:
        files += sorted((PLUGINS / kind).glob("*.py"))
    return files


# --- imports ---------------------------------------------------------------------------------------------

def _guarded(node: ast.AST, parents: Dict[ast.AST, ast.AST]) -> bool:
    """True when the import sits in a try whose handlers catch ImportError (or Exception)."""
    child = node
    parent = parents.get(node)
    while parent is not None:
        if isinstance(parent, ast.Try) and child in parent.body:
            for handler in parent.handlers:
                names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
                if any(isinstance(name, ast.Name) and name.id in ("ImportError", "ModuleNotFoundError", "Exception")
                       for name in names):
                    return True
        child, parent = parent, parents.get(parent)
    return False


def file_imports(path: Path) -> List[Tuple[str, bool]]:
    """(dotted module, guarded) for every import in the file, also inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: List[Tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, _guarded(node, parents)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, _guarded(node, parents)))
            # `from ansible_collections.kvmsnap.core.plugins.module_utils import _ds_paths` names a module
            if node.module.startswith(COLLECTION_PKG):
                found += [("%s.%s" % (node.module, alias.name), _guarded(node, parents)) for alias in node.names]
    return found


def _collection_file(dotted: str) -> Optional[Path]:
    rel = dotted[len(COLLECTION_PKG):].split(".")
    path = REPO.joinpath(*rel)
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def third_party_imports(entries: Iterable[Path]) -> Dict[str, List[Tuple[str, bool]]]:
    """Top-level third-party module -> [(importing file, guarded)], following the collection's own imports."""
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    seen: Set[Path] = set()
    todo = list(entries)
    found: Dict[str, List[Tuple[str, bool]]] = {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for dotted, guarded in file_imports(path):
            top = dotted.split(".")[0]
            if dotted.startswith(COLLECTION_PKG):
                target = _collection_file(dotted)
                if target is not None:
                    todo.append(target)
            elif top not in stdlib and top not in ("ansible", "ansible_collections"):
                found.setdefault(top, []).append((str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
                                                  guarded))
    return found


def distribution_of(top_module: str) -> str:
    dists = metadata.packages_distributions().get(top_module)
    if not dists:
        raise AssertionError("no installed distribution provides the module %r: install it into the venv "
                             "(requirements-dev.txt) so the test can name its package" % top_module)
    return str(canonicalize_name(dists[0]))


def requirement_lines(path: Path) -> List[str]:
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def ansible_core_requirements() -> Set[str]:
    """What ansible-core itself installs (PyYAML, Jinja2, ...): every EE has it, so the collection need not declare it."""
    return {str(canonicalize_name(Requirement(line).name)) for line in metadata.requires("ansible-core") or []
            if "extra ==" not in line}


def declared_python() -> Dict[str, Requirement]:
    reqs = [Requirement(line) for line in requirement_lines(REPO / "meta" / "ee-requirements.txt")]
    return {str(canonicalize_name(req.name)): req for req in reqs}


def undeclared(found: Dict[str, List[Tuple[str, bool]]], declared: Set[str]) -> Dict[str, List[str]]:
    """Third-party imports of the controller side the EE would lack: dist -> files (empty when all declared)."""
    missing: Dict[str, List[str]] = {}
    for top, sites in found.items():
        dist = distribution_of(top)
        if dist in declared or dist in ansible_core_requirements():
            continue
        if dist in KVM_HOST_ONLY and all(guarded for _site, guarded in sites):
            continue
        missing.setdefault(dist, []).extend(sorted({where for where, _guarded in sites}))
    return missing


# --- tests: what runs where ------------------------------------------------------------------------------

def test_the_roles_run_modules_on_both_sides() -> None:
    runs = module_runs()
    assert len(runs) > 20, "too few module tasks found in roles/ and playbooks/: %d" % len(runs)
    local = controller_modules()
    assert {"ontap_snapshot", "ontap_snapshot_info", "ontap_restore", "ontap_snapmirror"} <= local, local


def test_no_kvm_host_module_runs_on_the_controller() -> None:
    # vm_* and backup_manifest* act on the host's libvirtd and datastores: delegated to localhost they
    # would need libvirt-python in the EE (and act on the wrong machine).
    wrong = ["%s (%s)" % (where, module) for module, delegate, where in module_runs()
             if _is_local(delegate) and not module.startswith("ontap_")]
    assert not wrong, "KVM-host modules delegated to the controller: %s" % wrong


def test_controller_side_imports_are_declared() -> None:
    found = third_party_imports(controller_entry_files())
    assert "jmespath" in found and "netapp_lib" in found, sorted(found)
    missing = undeclared(found, set(declared_python()))
    assert not missing, ("the controller side (EE) imports packages meta/ee-requirements.txt does not declare "
                         "(or imports a KVM-host library unguarded): %s" % missing)


def test_every_declared_package_is_used_by_the_controller_side() -> None:
    used = {distribution_of(top) for top in third_party_imports(controller_entry_files())}
    unused = sorted(set(declared_python()) - used)
    assert not unused, "meta/ee-requirements.txt declares packages no controller-side code imports: %s" % unused
    assert not set(declared_python()) & KVM_HOST_ONLY, "KVM-host libraries do not belong in the EE"


def test_the_import_check_catches_an_undeclared_import(tmp_path: Path) -> None:
    plugin = tmp_path / "newfilter.py"
    plugin.write_text("from __future__ import annotations\nimport yaml\nimport lxml.etree\n"
                      "from ansible_collections.kvmsnap.core.plugins.module_utils import _libvirt\n"
                      "try:\n    import libvirt\nexcept ImportError:\n    libvirt = None\n", encoding="utf-8")
    found = third_party_imports([plugin])
    assert set(found) == {"yaml", "lxml", "libvirt"}, found  # _libvirt's own guarded import of libvirt counts too
    # PyYAML comes with ansible-core; lxml is in no EE unless declared
    assert undeclared(found, set(declared_python())) == {"lxml": [str(plugin)]}
    unguarded = tmp_path / "unguarded.py"
    unguarded.write_text("import libvirt\n", encoding="utf-8")
    assert undeclared(third_party_imports([unguarded]), set(declared_python())) == {"libvirt-python": [str(unguarded)]}


def test_controller_code_imports_without_the_kvm_host_libraries() -> None:
    # The guard the static check trusts, run: the controller side's modules import with libvirt blocked.
    names = ["ansible_collections.kvmsnap.core.plugins.%s.%s" % (path.parent.name, path.stem)
             for path in controller_entry_files()]
    blocked = ["libvirt", "libvirt_qemu", "libvirtmod", "libvirtmod_qemu"]  # what libvirt-python installs
    code = ("import importlib, sys\n"
            "for name in %r: sys.modules[name] = None\n"
            "for name in %r: importlib.import_module(name)\n"
            "print('imported', len(%r))\n") % (blocked, names, names)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                          env=dict(os.environ, PYTHONPATH=str(REPO / "build" / "collections")))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "imported %d" % len(names)


# --- tests: the collection's EE metadata and the builder context -----------------------------------------

def test_meta_execution_environment_is_what_introspection_reads() -> None:
    raw = _load_yaml(META_EE)
    assert raw["version"] == 3
    validate_schema(raw)  # ansible-builder's own version 3 schema (raises on an unknown or malformed key)
    deps = raw["dependencies"]
    # ansible-builder resolves a collection's files from the collection root, and only as paths
    assert deps == {"python": "meta/ee-requirements.txt", "system": "meta/ee-bindep.txt"}, deps
    for rel in deps.values():
        assert (REPO / rel).is_file(), rel
    bindep = requirement_lines(REPO / "meta" / "ee-bindep.txt")
    assert bindep and not [line for line in bindep if "compile" in line or "libvirt" in line], bindep


@pytest.fixture(scope="module")
def builder_context(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    work = tmp_path_factory.mktemp("ee")
    tarball = build_tarball(work / "dist")
    # The definition next to the file it names (build/ee/kvmsnap-core.tar.gz), as in a checkout.
    project = work / "project"
    (project / "build" / "ee").mkdir(parents=True)
    shutil.copy(EE_DEFINITION, project / "execution-environment.yml")
    shutil.copy(tarball, project / "build" / "ee" / "kvmsnap-core.tar.gz")
    context = work / "context"
    proc = subprocess.run([tool("ansible-builder"), "create", "-f", str(project / "execution-environment.yml"),
                           "-c", str(context), "--output-filename", "Containerfile"],
                          capture_output=True, text=True, timeout=300, check=False, cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"context": context, "tarball": tarball, "work": work}


def _containerfile_args(containerfile: str) -> Dict[str, str]:
    return dict(re.findall(r'^ARG (\w+)="([^"]*)"$', containerfile, re.M))


def test_the_containerfile_installs_what_the_definition_says(builder_context: Dict[str, Path]) -> None:
    definition = _load_yaml(EE_DEFINITION)
    assert definition["version"] == 3
    containerfile = (builder_context["context"] / "Containerfile").read_text(encoding="utf-8")
    args = _containerfile_args(containerfile)
    deps = definition["dependencies"]
    assert args["EE_BASE_IMAGE"] == definition["images"]["base_image"]["name"]
    assert args["PYCMD"] == deps["python_interpreter"]["python_path"]
    assert args["PYPKG"] == deps["python_interpreter"]["package_system"]
    assert args["ANSIBLE_INSTALL_REFS"].split() == [deps["ansible_core"]["package_pip"], deps["ansible_runner"]["package_pip"]]
    # the stages that put the collection and its dependencies into the image
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in containerfile
    assert re.search(r"introspect\.py introspect .*--write-pip=", containerfile), "no introspection step"
    assert "/output/scripts/install-from-bindep" in containerfile


def test_the_ee_ansible_core_is_the_tested_one_and_meets_requires_ansible() -> None:
    core = Requirement(_load_yaml(EE_DEFINITION)["dependencies"]["ansible_core"]["package_pip"])
    assert core.name == "ansible-core"
    pinned = [Requirement(line) for line in requirement_lines(REPO / "requirements-dev.txt")
              if line.startswith("ansible-core")]
    assert len(pinned) == 1
    tested = next(iter(pinned[0].specifier)).version
    assert core.specifier.contains(tested), "the EE's %s excludes the ansible-core the tests run (%s)" % (core, tested)
    requires = Requirement("ansible-core" + _load_yaml(REPO / "meta" / "runtime.yml")["requires_ansible"])
    lowest = min(Version(spec.version) for spec in core.specifier if spec.operator in (">=", "=="))
    assert requires.specifier.contains(lowest), "the EE allows %s, below requires_ansible %s" % (lowest, requires)


def test_the_context_holds_this_collection(builder_context: Dict[str, Path]) -> None:
    build = builder_context["context"] / "_build"
    reqs = _load_yaml(build / "requirements.yml")
    assert reqs == _load_yaml(EE_DEFINITION)["dependencies"]["galaxy"]
    entries = reqs["collections"]
    assert len(entries) == 1 and entries[0]["type"] == "file"
    shipped = build / entries[0]["name"]
    assert filecmp.cmp(shipped, builder_context["tarball"], shallow=False), "the context's tarball is not this build"
    # The definition declares no Python or system packages of its own: they come from the collection.
    assert not (build / "requirements.txt").exists() and not (build / "bindep.txt").exists()


def test_the_build_stages_install_the_collection_and_exactly_its_declared_dependencies(
        builder_context: Dict[str, Path]) -> None:
    build = builder_context["context"] / "_build"
    collections = builder_context["work"] / "share"
    # no collection path of this checkout: Ansible would find kvmsnap.core there and install nothing
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_") and key != "PYTHONPATH"}
    env["ANSIBLE_GALAXY_DISABLE_GPG_VERIFY"] = "1"
    # galaxy stage, in the context's _build as the Containerfile runs it (offline: the requirement is a file)
    proc = subprocess.run([tool("ansible-galaxy"), "collection", "install", "-r", "requirements.yml",
                           "--collections-path", str(collections)],
                          cwd=build, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = collections / "ansible_collections" / "kvmsnap" / "core"
    manifest = _load_yaml(installed / "MANIFEST.json")["collection_info"]
    assert manifest["version"] == galaxy_meta()["version"]
    assert (installed / "meta" / "execution-environment.yml").is_file()
    assert not (installed / "tests" / "lab").exists()
    # builder stage: the context's own introspection over what the galaxy stage installed
    pip_out, bindep_out = builder_context["work"] / "requirements.txt", builder_context["work"] / "bindep.txt"
    proc = subprocess.run([sys.executable, str(build / "scripts" / "introspect.py"), "introspect", str(collections),
                           "--write-pip=%s" % pip_out, "--write-bindep=%s" % bindep_out],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    origin = "  # from collection kvmsnap.core"
    assert pip_out.read_text(encoding="utf-8").splitlines() == [
        line + origin for line in requirement_lines(REPO / "meta" / "ee-requirements.txt")]
    assert bindep_out.read_text(encoding="utf-8").splitlines() == [
        line + origin for line in requirement_lines(REPO / "meta" / "ee-bindep.txt")]


def test_the_readme_states_the_same_requirements() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Requirements\n", 1)[1].split("\n## ", 1)[0]
    for name in declared_python():
        assert "`%s`" % name in section, "README's Requirements do not name %s (meta/ee-requirements.txt)" % name
    minimum = re.match(r">=\s*(\d+\.\d+)", _load_yaml(REPO / "meta" / "runtime.yml")["requires_ansible"])
    assert minimum, "meta/runtime.yml requires_ansible is not a lower bound"
    assert "ansible-core %s or later" % minimum.group(1) in section
    for name in sorted(KVM_HOST_ONLY) + ["python3-libvirt", "meta/execution-environment.yml", "meta/ee-requirements.txt"]:
        assert name in section, name
