"""Fixtures for the simulator's own tests: a shared fast (latency 0) simulator per module,
fresh ones for tests that need a clean cluster or a custom config."""

from __future__ import annotations

import pytest
from helpers.sim_fixtures import start_sim
from simapi import Client

FAST = ["--latency-scale", "0"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = start_sim(tmp_path_factory.mktemp("sim") / "data", extra_args=FAST)
    yield s
    s.stop()


@pytest.fixture
def api(sim):
    return Client(sim)


@pytest.fixture
def fast_sim(sim_factory):
    """Start a simulator with latency off: fast_sim(config_dict_or_None, name=...)."""
    def start(config=None, name="sim", **kw):
        return sim_factory(config, name=name, extra_args=FAST + kw.pop("extra_args", []), **kw)
    return start


@pytest.fixture
def zapi_env(monkeypatch, sim):
    # netapp-lib uses urllib's default TLS context, which honours SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", sim.ca_file)
    return sim
