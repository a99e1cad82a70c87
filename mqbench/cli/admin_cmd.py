"""``mqbench admin``: mqadmin's everyday verbs against the reference cluster or a real RocketMQ one.

    mqbench admin cluster                                   [--target NAMESRV | --dir D] [--json]
    mqbench admin topic list [--all]
    mqbench admin topic create TOPIC [--queues 8] [--read-queues N] [--perm 6] [--attribute k=v]...
                                     [--broker NAME]... [--cluster NAME]
    mqbench admin topic update TOPIC (same options)
    mqbench admin group list
    mqbench admin group offsets GROUP [--topic T]

The cluster is the one ``mqbench cluster up`` started in ``--dir`` (default ``.mqbench/cluster``),
or any RocketMQ-compatible cluster given by its name server(s) with ``--target host:port[;host:port]``.
Requests are signed (RocketMQ ACL) with ``--access-key``/``--secret-key`` (or MQBENCH_ACCESS_KEY /
MQBENCH_SECRET_KEY), or, for a ``cluster up --acl`` cluster in ``--dir``, with its admin account.
The work is in ``mqbench.admin``; this module parses flags and prints.
"""
from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from pathlib import Path

import click

from mqbench.cli.options import json_option
from mqbench.errors import UserError
from mqbench.output import document, print_json, table

CLUSTER_SCHEMA = "mqbench.admin-cluster/1"
TOPICS_SCHEMA = "mqbench.admin-topics/1"
TOPIC_CHANGE_SCHEMA = "mqbench.admin-topic-change/1"
GROUPS_SCHEMA = "mqbench.admin-groups/1"
OFFSETS_SCHEMA = "mqbench.admin-group-offsets/1"
DEFAULT_DIR = Path(".mqbench") / "cluster"


@dataclass
class Target:
    """Where the admin commands go and how they sign (from the options ``_target_options`` adds)."""

    namesrv: str | None
    directory: Path
    timeout_s: float
    access_key: str | None
    secret_key: str | None


def _target_options(func):
    """Adds --target/--dir/--timeout/--access-key/--secret-key/--json; the command gets ``where``."""
    @functools.wraps(func)
    def command(*args, target, directory, timeout_s, access_key, secret_key, **kwargs):
        return func(*args, where=Target(target, directory, timeout_s, access_key, secret_key), **kwargs)

    command = click.option("--secret-key", envvar="MQBENCH_SECRET_KEY", default=None, show_envvar=True,
                           help="ACL secretKey (better given by the environment variable).")(command)
    command = click.option("--access-key", envvar="MQBENCH_ACCESS_KEY", default=None, show_envvar=True,
                           help="ACL accessKey to sign requests with, for brokers that check RocketMQ's ACL "
                                "(a `cluster up --acl` cluster in --dir signs with its own admin account).")(command)
    command = click.option("--timeout", "timeout_s", type=click.FloatRange(0.1, 120), default=3.0, show_default=True,
                           help="Seconds to wait for each answer.")(command)
    command = click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
                           default=DEFAULT_DIR, show_default=True,
                           help="Directory of a cluster started by `mqbench cluster up` "
                                "(used when --target is not given).")(command)
    command = click.option("--target", metavar="NAMESRV", default=None,
                           help="Name server(s) of any RocketMQ-compatible cluster, host:port[;host:port].")(command)
    return json_option(command)


def _connection(where: Target):
    """(name server address, credentials or None) of the cluster ``where`` names."""
    from mqbench.broker.formats.signature import Credentials

    if bool(where.access_key) != bool(where.secret_key):
        raise UserError("give both --access-key and --secret-key (or MQBENCH_ACCESS_KEY and MQBENCH_SECRET_KEY)")
    credentials = Credentials(where.access_key, where.secret_key) if where.access_key else None
    if where.namesrv:
        return where.namesrv, credentials
    from mqbench.cluster.launcher import cluster_credentials, cluster_layout
    from mqbench.cluster.processes import ClusterState

    try:
        state = ClusterState.load(where.directory)
    except UserError as exc:
        raise UserError(f"{exc}; give --target NAMESRV for another cluster") from None
    return cluster_layout(state).namesrv_addr, credentials or cluster_credentials(state)


def _run(where: Target, work):
    """Run ``await work(session)`` on a session to the cluster; returns (name server, its result)."""
    from mqbench.admin.calls import AdminSession

    namesrv, credentials = _connection(where)

    async def main():
        async with AdminSession(namesrv, timeout_s=where.timeout_s, credentials=credentials) as session:
            return await work(session)

    return namesrv, asyncio.run(main())


@click.group()
def admin() -> None:
    """mqadmin's everyday verbs (cluster, topics, group offsets) over the remoting protocol.

    Works on the reference cluster (`mqbench cluster up`, found through --dir) and on a real
    RocketMQ cluster (--target NAMESRV) alike: the same request codes mqadmin uses.
    """


@admin.command("cluster")
@_target_options
def cluster_(where: Target, as_json: bool) -> None:
    """Brokers, broker groups and replicas: role, version and traffic of each replica."""
    from mqbench.admin.cluster import query_cluster_in

    namesrv, view = _run(where, query_cluster_in)
    if as_json:
        print_json(view.to_json())
        return
    click.echo(f"name server {namesrv}: {len(view.groups)} broker group(s), {len(view.replicas)} replica(s) on "
               f"{len(view.hosts)} host(s), cluster(s) {', '.join(view.clusters) or '-'}")
    rows = [[g.cluster, g.broker_name, r.broker_id, r.addr, r.role, r.term, r.version, r.put_10s_msgs_per_s,
             r.get_10s_msgs_per_s] for g in view.groups for r in g.replicas]
    click.echo(table(rows, ["cluster", "broker group", "id", "address", "role", "term", "version", "in msgs/s",
                            "out msgs/s"], floatfmt=",.2f"))
    for r in view.replicas:
        if r.error:
            click.echo(f"{r.addr}: {r.error}")


@admin.group()
def topic() -> None:
    """List, create and update topics (on every broker group's master)."""


@topic.command("list")
@click.option("--all", "include_internal", is_flag=True, help="Also retry, dead-letter and system topics.")
@_target_options
def topic_list(include_internal: bool, where: Target, as_json: bool) -> None:
    """Topics with their read/write queues and permission per broker group."""
    from mqbench.admin.topics import list_topics

    namesrv, topics = _run(where, lambda s: list_topics(s, include_internal))
    if as_json:
        print_json(document(TOPICS_SCHEMA, namesrv=namesrv, topics=[t.to_json() for t in topics]))
        return
    rows = [[t.name, t.kind, q.broker_name, q.read_queues, q.write_queues, q.perm]
            for t in topics for q in (t.queues or [None]) if q is not None] + \
           [[t.name, t.kind, "(no route)", "", "", ""] for t in topics if not t.queues]
    click.echo(table(rows, ["topic", "kind", "broker group", "read queues", "write queues", "perm"]))


def _attributes(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key.strip() or not val.strip():
            raise UserError(f"--attribute {value!r} is not key=value (e.g. queue.type=BatchCQ)")
        out[key.strip()] = val.strip()
    return out


def _topic_change(create: bool):
    verb = "create" if create else "update"

    @click.argument("name")
    @click.option("--queues", type=click.IntRange(1, 1024), default=8, show_default=True,
                  help="Write queues per broker group (and read queues unless --read-queues).")
    @click.option("--read-queues", type=click.IntRange(1, 1024), default=None, help="Read queues, if not --queues.")
    @click.option("--perm", type=click.IntRange(0, 7), default=6, show_default=True,
                  help="RocketMQ permission bits: 2 write, 4 read, 6 both.")
    @click.option("--attribute", "attributes", multiple=True, metavar="KEY=VALUE",
                  help="RocketMQ 5 topic attribute, e.g. queue.type=BatchCQ (repeatable).")
    @click.option("--broker", "brokers", multiple=True, metavar="GROUP",
                  help="Only on this broker group (repeatable); default every group.")
    @click.option("--cluster", "cluster_name", default=None, help="Only on the broker groups of this cluster.")
    @click.option("--route-wait", "route_wait_s", type=click.FloatRange(0, 120), default=10, show_default=True,
                  help="Seconds to wait for the name server to route the change.")
    @_target_options
    def command(name: str, queues: int, read_queues: int | None, perm: int, attributes: tuple[str, ...],
                brokers: tuple[str, ...], cluster_name: str | None, route_wait_s: float, where: Target,
                as_json: bool) -> None:
        from mqbench.admin.topics import change_topic

        attrs = _attributes(attributes)
        namesrv, change = _run(where, lambda s: change_topic(
            s, name, create=create, queues=queues, read_queues=read_queues, perm=perm, attributes=attrs,
            brokers=list(brokers) or None, cluster=cluster_name, route_wait_s=route_wait_s,
            timeout_s=max(where.timeout_s, 5.0)))
        if as_json:
            print_json(document(TOPIC_CHANGE_SCHEMA, namesrv=namesrv, **change.to_json()))
            return
        routed = "routed" if change.routed else f"not routed yet after {route_wait_s:g} s"
        click.echo(f"topic {change.topic} {change.action} on {', '.join(change.brokers)}: {change.queues} write / "
                   f"{change.read_queues} read queues, perm {change.perm}; {routed}")

    command.__doc__ = (f"{verb.capitalize()} topic NAME on every broker group's master "
                       f"({'refused if it exists' if create else 'refused if it does not exist'}).")
    return topic.command(verb)(command)


topic_create = _topic_change(create=True)
topic_update = _topic_change(create=False)


@admin.group()
def group() -> None:
    """Consumer groups: list them, show their offsets and lag per queue."""


@group.command("list")
@_target_options
def group_list(where: Target, as_json: bool) -> None:
    """Every consumer group (from its %RETRY% topic): consumers online, total lag, consume rate."""
    from mqbench.admin.groups import list_groups

    namesrv, groups = _run(where, list_groups)
    if as_json:
        print_json(document(GROUPS_SCHEMA, namesrv=namesrv, groups=[g.to_json() for g in groups]))
        return
    click.echo(table([[g.group, g.consumers_online, g.lag_total_msgs, g.consume_msgs_per_s, g.error or ""]
                      for g in groups], ["group", "consumers online", "lag msgs", "consume msgs/s", "error"],
                     floatfmt=",.2f"))


@group.command("offsets")
@click.argument("name")
@click.option("--topic", default=None, help="Only this topic.")
@_target_options
def group_offsets(name: str, topic: str | None, where: Target, as_json: bool) -> None:
    """Offsets and lag of consumer group NAME per queue (broker offset - consumer offset)."""
    from datetime import datetime, timezone

    from mqbench.admin.groups import group_offsets as query

    namesrv, found = _run(where, lambda s: query(s, name, topic))
    if as_json:
        print_json(document(OFFSETS_SCHEMA, namesrv=namesrv, **found.to_json()))
        return

    def when(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"

    click.echo(table([[r.topic, r.broker_name, r.queue_id, r.max_offset, r.consumer_offset, r.lag,
                       when(r.last_timestamp_ms)] for r in found.rows],
                     ["topic", "broker group", "queue", "broker offset", "consumer offset", "lag",
                      "last consumed (UTC)"]))
    click.echo(f"group {found.group}: lag {found.lag_total} msgs, consuming {found.consume_msgs_per_s:.2f} msgs/s, "
               f"{len(found.consumers)} consumer(s) online")
