"""``mqbench admin`` against a cluster whose brokers check RocketMQ's ACL (`cluster up --acl`): the
cluster's own directory signs with its admin account, --target needs keys, and the broker's
refusals come back as one line."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from mqbench.broker.layout import load_layout
from mqbench.cli import cli
from mqbench.cluster import launcher
from mqbench.run.environment import free_port_offset

pytestmark = pytest.mark.realproc

ACL_FILE = Path(__file__).parent.parent / "acl" / "plain_acl.yml"


def admin(*args: str, env: dict | None = None):
    return CliRunner(env=env).invoke(cli, ["admin", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def acl_cluster(tmp_path_factory):
    offset = free_port_offset(load_layout("single"), first=44000)
    state = launcher.up("single", tmp_path_factory.mktemp("acl") / "cluster", port_offset=offset, wait_s=60,
                        acl_file=ACL_FILE)
    try:
        yield state, load_layout("single").with_port_offset(offset).namesrv_addr
    finally:
        launcher.down(state, timeout_s=5)


def test_the_clusters_directory_signs_with_its_admin_account(acl_cluster):
    state, _namesrv = acl_cluster
    made = admin("topic", "create", "AclT", "--queues", "2", "--dir", str(state.directory), "--json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["routed"] is True
    doc = json.loads(admin("cluster", "--dir", str(state.directory), "--json").output)
    assert doc["replicas_count"] == 1 and doc["groups"][0]["replicas"][0]["role"] == "leader"


def test_target_needs_keys_and_admin_rights(acl_cluster):
    _state, namesrv = acl_cluster
    env_clear = {"MQBENCH_ACCESS_KEY": None, "MQBENCH_SECRET_KEY": None}
    unsigned = admin("topic", "create", "AclU", "--target", namesrv, env=env_clear)
    assert unsigned.exit_code == 2 and unsigned.output.count("\n") == 1
    assert unsigned.output.startswith("mqbench: error: ") and "AclException" in unsigned.output
    user = admin("topic", "create", "AclU", "--target", namesrv, "--access-key", "RocketMQ",
                 "--secret-key", "12345678", env=env_clear)
    assert user.exit_code == 2 and "Need admin permission" in user.output
    # an admin account from the environment, as the help suggests
    env = {"MQBENCH_ACCESS_KEY": "rocketmq2", "MQBENCH_SECRET_KEY": "12345678"}
    made = admin("topic", "create", "AclU", "--queues", "2", "--target", namesrv, "--json", env=env)
    assert made.exit_code == 0, made.output
    # a read-only verb needs a valid account, not an admin one
    listed = admin("cluster", "--target", namesrv, "--access-key", "RocketMQ", "--secret-key", "12345678", "--json")
    assert listed.exit_code == 0 and json.loads(listed.output)["groups"][0]["replicas"][0]["error"] is None
    unsigned_view = json.loads(admin("cluster", "--target", namesrv, "--json", env=env_clear).output)
    replica = unsigned_view["groups"][0]["replicas"][0]
    assert replica["role"] == "refused" and "AclException" in replica["error"]
    half = admin("cluster", "--target", namesrv, "--access-key", "RocketMQ", env=env_clear)
    assert half.exit_code == 2 and "give both --access-key and --secret-key" in half.output
    assert os.environ.get("MQBENCH_SECRET_KEY") is None
