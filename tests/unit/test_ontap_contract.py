"""The Ontap base class is the contract of the ONTAP interface: both transports implement all of it."""

from __future__ import annotations

import inspect

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_interface import Ontap
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_rest import OntapRest
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_zapi import HAS_NETAPP_LIB, OntapZapi

PARAMS = {"hostname": "ontap.example", "username": "u", "password": "secret-pw", "validate_certs": True,
          "timeout": 5, "retries": 0}
# what the modules, the fence and the roles call on a client: declared on the base class
CONTRACT = ("version", "known_version", "version_at_least", "list_svms", "list_volumes", "get_volume",
            "list_ip_interfaces", "list_luns", "list_snapshots", "get_snapshot", "create_snapshot_set",
            "delete_snapshot", "set_snapshot_comment", "snapshot_file_info", "volume_file_info", "predict_method",
            "list_temp_cgs",
            "delete_cg", "restore_file", "restore_lun", "restore_volume", "list_snapmirror", "update_snapmirror",
            "privileges_for")


def transports():
    out = [OntapRest]
    if HAS_NETAPP_LIB:
        out.append(OntapZapi)
    return out


def test_the_base_class_declares_the_contract():
    missing = [name for name in CONTRACT if not hasattr(Ontap, name)]
    assert missing == []
    for name in Ontap.__abstractmethods__:
        assert inspect.getdoc(getattr(Ontap, name)), "%s has no docstring saying what it returns" % name


@pytest.mark.parametrize("cls", transports(), ids=lambda c: c.transport)
def test_each_transport_implements_every_abstract_method(cls):
    client = cls(dict(PARAMS), "test")  # abc refuses to instantiate a class that lacks one
    assert not getattr(cls, "__abstractmethods__", None)
    assert client.known_version is None  # nothing was asked yet
    for name in CONTRACT:
        assert callable(getattr(client, name)) or name == "known_version"


@pytest.mark.parametrize("cls", transports(), ids=lambda c: c.transport)
def test_public_methods_of_a_transport_are_contract_or_its_own_plumbing(cls):
    """A public method both transports have must be on the base class (the contract), not only in them."""
    others = [c for c in transports() if c is not cls]
    for name, _member in inspect.getmembers(cls, predicate=inspect.isfunction):
        if name.startswith("_") or hasattr(Ontap, name):
            continue
        assert not any(hasattr(o, name) for o in others), "%s is in every transport but not in Ontap" % name


def test_a_transport_lacking_a_method_cannot_be_instantiated():
    namespace = {name: (lambda self, *a, **k: None) for name in Ontap.__abstractmethods__ if name != "list_luns"}
    incomplete = type("Incomplete", (Ontap,), namespace)
    with pytest.raises(TypeError, match="list_luns"):
        incomplete(dict(PARAMS))  # pylint: disable=abstract-class-instantiated  # what this test checks
