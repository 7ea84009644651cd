"""ZAPI request building and the NaServer subclass (no network: the urllib request is only built)."""

from __future__ import annotations

import base64
import ssl
import urllib.request

import pytest

pytest.importorskip("netapp_lib")

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_zapi import KvmsnapNaServer, _el


def test_element_builder_nests_repeats_and_drops_none():
    elem = _el("cg-start", {"snapshot": "s1", "timeout": "relaxed", "snapmirror-label": None,
                            "volumes": [("volume-name", "a"), ("volume-name", "b")], "force": True})
    xml = elem.to_string().decode()
    assert "<volumes><volume-name>a</volume-name><volume-name>b</volume-name></volumes>" in xml
    assert "<force>true</force>" in xml and "snapmirror-label" not in xml


def test_server_sends_basic_auth_preemptively_and_tunnels():
    ctx = ssl.create_default_context()
    server = KvmsnapNaServer("fe80::1", 8443, "admin", "p\u00e4ss", ctx, 30, "ontap_snapshot")
    server.set_vserver("svm1")
    request, _elem = server._create_request(_el("snapshot-create", {"volume": "v", "snapshot": "s"}), True)
    assert request.full_url == "https://[fe80::1]:8443/servlets/netapp.servlets.admin.XMLrequest_filer"
    assert request.get_header("Authorization") == "Basic " + base64.b64encode("admin:p\u00e4ss".encode()).decode()
    assert request.get_header("X-dot-client-app") == "kvmsnap.core/ontap_snapshot"
    assert b'vfiler="svm1"' in request.data
    server._build_opener()
    handlers = {type(h) for h in server._opener.handlers}
    assert urllib.request.HTTPBasicAuthHandler in handlers  # still answers a 401 challenge
    https = [h for h in server._opener.handlers if isinstance(h, urllib.request.HTTPSHandler)][0]
    assert https._context is ctx  # per-session TLS, no global default context
    assert ssl._create_default_https_context is ssl.create_default_context
