"""Fixtures for the simulator's own tests. Simulators run with latency off and are shared by the
whole session; `api`/`fresh`/`lab` reset the shared one (POST /_sim/reset: data, faults and call
log) so each test starts clean. Tests that change latency put it back."""

from __future__ import annotations

import pytest
from helpers.sim_fixtures import start_sim
from simapi import LAB_CONFIG, Client

FAST = ["--latency-scale", "0"]


@pytest.fixture(scope="session")
def sim(tmp_path_factory):
    s = start_sim(tmp_path_factory.mktemp("sim") / "data", extra_args=FAST)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def lab_sim(tmp_path_factory):
    s = start_sim(tmp_path_factory.mktemp("labsim") / "data", LAB_CONFIG, extra_args=FAST)
    yield s
    s.stop()


@pytest.fixture
def api(sim):
    """The default cluster, reset."""
    c = Client(sim)
    c.admin("POST", "reset")
    return c


@pytest.fixture
def fresh(sim):
    """The default cluster, freshly reset."""
    c = Client(sim)
    c.admin("POST", "reset")
    return c


@pytest.fixture
def lab(lab_sim):
    """tests/sim/simapi.LAB_CONFIG (two SVMs, a LUN, vault + mirror relationships), reset."""
    c = Client(lab_sim)
    c.admin("POST", "reset")
    return c


@pytest.fixture
def fast_sim(sim_factory):
    """Start a dedicated simulator with latency off: fast_sim(config_dict_or_None, name=...)."""
    def start(config=None, name="sim", **kw):
        return sim_factory(config, name=name, extra_args=FAST + kw.pop("extra_args", []), **kw)
    return start


@pytest.fixture
def zapi_env(monkeypatch, sim):
    # netapp-lib uses urllib's default TLS context, which honours SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", sim.ca_file)
    return sim
