"""Shared test configuration.

Hypothesis runs with a bounded example count in CI (profile ``ci``) and more locally when asked
(``--hypothesis-profile=dev``)."""
import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _port_offset_free_for(layout_name: str) -> int:
    """A port offset at which every port of the layout (name server, client and Raft ports) is free
    right now; tests that start real clusters take one each, so parallel runs do not collide."""
    import random
    import socket

    from mqbench.broker.layout import load_layout

    layout = load_layout(layout_name)
    wanted = [(layout.hosts[layout.namesrv_host], layout.namesrv_port)]
    wanted += [(i.address, p) for i in layout.instances for p in (i.port, i.raft_port)]
    for _ in range(100):
        offset = random.randrange(2000, 40000, 10)
        free = True
        for address, port in wanted:
            with socket.socket() as s:
                try:
                    s.bind((address, port + offset))
                except OSError:
                    free = False
        if free:
            return offset
    pytest.skip(f"no port offset leaves every port of layout {layout_name} free")


@pytest.fixture
def free_port_offset():
    """``free_port_offset(layout_name) -> int`` (see ``_port_offset_free_for``)."""
    return _port_offset_free_for
