"""``mqbench migrate SRC --to VERSION --out DST``: convert a broker store to another format version
(see ``mqbench.migrate``)."""
from __future__ import annotations

import sys

import click

from mqbench.cli.options import json_option
from mqbench.output import document, is_terminal, print_json

SCHEMA = "mqbench.migrate/1"
VERSIONS = ("v4", "v5", "v4-dledger", "v5-dledger")


def _progress(total_bytes: int):
    if not is_terminal(sys.stderr) or total_bytes <= 0:
        return None

    def show(done_bytes: int) -> None:
        pct = min(100.0, 100.0 * done_bytes / total_bytes)
        click.echo(f"\rmigrating: {done_bytes / 1e6:,.1f} of {total_bytes / 1e6:,.1f} MB ({pct:.0f}%)", err=True, nl=False)

    return show


def _resume_command(src, dst, target, codec, compress_over_bytes, segment_bytes, map_timers, force) -> str:
    """The command line that continues an interrupted migration (the same options, --resume)."""
    import shlex

    words = ["mqbench", "migrate", src, "--to", target, "--out", dst]
    if codec:
        words += ["--codec", codec]
    if compress_over_bytes != 4096:
        words += ["--compress-over-bytes", str(compress_over_bytes)]
    if segment_bytes:
        words += ["--segment-bytes", str(segment_bytes)]
    if map_timers:
        words.append("--map-timers-to-levels")
    if force:
        words.append("--force")
    return shlex.join(words + ["--resume"])


def _print_plan(plan, est: dict) -> None:
    echo = click.echo
    echo(f"source   {plan.source} ({plan.source_version})")
    echo(f"target   {plan.target_version}")
    echo(f"log      {len(plan.source_files)} files, {plan.records} records, {plan.messages} messages, "
         f"{plan.entries_other} other DLedger entries, {plan.valid_log_bytes:,} bytes")
    echo(f"estimate {est['target_bytes']:,} bytes in DST (log {est['target_log_bytes']:,}, queues "
         f"{est['target_queue_bytes']:,}); about {est['time_s']} s at {est['rate_mb_per_s']} MB/s")
    if plan.keeps_raft_indexes:
        echo("raft     entry indexes and terms are kept")
    for note in plan.notes:
        echo(f"note     {note}")
    if plan.blockers:
        echo(plan.blocker_text())
    else:
        echo("blockers none")


def _rolling(cluster_dir, target: str, groups: list[str], keep_old: bool, as_json: bool, src) -> None:
    import asyncio

    from mqbench.cluster.processes import ClusterState
    from mqbench.errors import UserError
    from mqbench.migrate.rolling import rolling_upgrade

    if cluster_dir is None:
        raise UserError("--rolling needs --cluster DIR (the folder of 'mqbench cluster up')")
    if src is not None:
        raise UserError("--rolling upgrades a running cluster: give --cluster DIR, not a store folder")
    state = ClusterState.load(cluster_dir)
    say = (lambda text: click.echo(text, err=True)) if not as_json else None
    steps = asyncio.run(rolling_upgrade(state, target, groups=groups or None, keep_old=keep_old, on_event=say))
    rows = [{"instance": s.instance, "group": s.group, "was_leader": s.was_leader, "from_version": s.from_version,
             "skipped": s.skipped, "down_s": round(s.down_s, 3), "migration_s": round(s.migrated_s, 3),
             "caught_up_after_s": round(s.caught_up_at_s - s.stopped_at_s, 3) if not s.skipped else 0.0,
             "records": s.records} for s in steps]
    if as_json:
        print_json(document(SCHEMA, mode="rolling", target_version=target, replicas=rows))
        return
    from mqbench.output import table
    click.echo(table([(r["instance"], "leader" if r["was_leader"] else "follower", r["from_version"],
                       "skipped" if r["skipped"] else f"{r['down_s']:.1f}", f"{r['migration_s']:.1f}",
                       f"{r['caught_up_after_s']:.1f}", r["records"]) for r in rows],
                     ["replica", "role", "from", "down s", "migration s", "back after s", "records"]))


@click.command("migrate")
@click.argument("src", type=click.Path(file_okay=True, dir_okay=True), required=False)
@click.option("--to", "target", type=click.Choice(VERSIONS), required=True, help="Target store version.")
@click.option("--out", "dst", type=click.Path(), default=None, help="Target store folder (new, or an interrupted one with --resume).")
@click.option("--codec", default=None, metavar="C",
              help="Re-compress bodies with C (none, zlib, zlib:5, zstd:3, lz4...); default: keep them as they are.")
@click.option("--compress-over-bytes", type=click.IntRange(min=0), default=4096, show_default=True,
              help="With --codec: bodies shorter than this are stored uncompressed (RocketMQ's rule).")
@click.option("--segment-bytes", type=click.IntRange(min=4096), default=None,
              help="Target commitlog / DLedger data file size; default: the source's.")
@click.option("--map-timers-to-levels", is_flag=True,
              help="v5 -> v4: deliver pending timer messages through the 18 delay levels (never early).")
@click.option("--dry-run", is_flag=True, help="Print the plan with space and time estimates; write nothing.")
@click.option("--verify", "do_verify", is_flag=True, help="After migrating (or alone, on an existing DST), compare SRC and DST.")
@click.option("--resume", is_flag=True, help="Continue an interrupted migration from the journal in DST.")
@click.option("--jobs", type=click.IntRange(min=0), default=None,
              help="Worker processes that check the source's records (CRCs, framing, keys) ahead of the copy; "
                   "0: none, all in one process. Default: one per CPU (at most 4). The output is the same.")
@click.option("--force", is_flag=True,
              help="Migrate a store whose broker is running (its lock held); by default that is refused.")
@click.option("--rolling", is_flag=True,
              help="Upgrade a running cluster (--cluster) replica by replica instead of a store folder.")
@click.option("--cluster", "cluster_dir", type=click.Path(), default=None,
              help="With --rolling: the folder of a cluster started by 'mqbench cluster up'.")
@click.option("--group", "groups", multiple=True, help="With --rolling: only this group (repeatable); default all.")
@click.option("--drop-old", is_flag=True, help="With --rolling: delete each replica's old store once it caught up.")
@json_option
def migrate(src, target, dst, codec, compress_over_bytes, segment_bytes, map_timers_to_levels, dry_run,
            do_verify, resume, jobs, force, rolling, cluster_dir, groups, drop_old, as_json) -> None:
    """Convert the broker store SRC to version --to in --out DST, or (--rolling --cluster DIR)
    every replica of a running cluster, one at a time, with traffic flowing.

    Reads any store version (mqbench's and real RocketMQ 4.x/5.x stores, plain or DLedger) and
    writes the target: records re-framed, queues and the key index rebuilt, queue offsets kept
    (consumer offsets stay valid), configs, consumer and delay offsets carried. SRC is never
    written. Refused: a store whose broker is running (lock held; --force overrides), the same
    version as an mqbench SRC (a copy); a refused migration removes DST. Crash-safe: after an
    interruption (Ctrl-C prints the command) rerun with --resume. Exit 0 on success, 1 when
    --verify finds a difference, 2 on bad input, a refused migration or a corrupt source.
    """
    from mqbench.codecs.registry import parse_codec
    from mqbench.errors import UserError
    from mqbench.migrate.plan import Options, make_plan
    from mqbench.migrate.run import migrate as run_migrate
    from mqbench.migrate.verify import verify

    if rolling:
        _rolling(cluster_dir, target, list(groups), not drop_old, as_json, src)
        return
    if src is None:
        raise UserError("SRC (the store folder to migrate) is required, unless --rolling")
    options = Options(target=target, codec=parse_codec(codec) if codec else None,
                      compress_over_bytes=compress_over_bytes, segment_bytes=segment_bytes,
                      map_timers_to_levels=map_timers_to_levels, jobs=jobs)
    if dry_run:
        plan = make_plan(src, options, scan=True)
        est = plan.estimate()
        if as_json:
            print_json(document(SCHEMA, mode="dry-run", source=plan.source, source_version=plan.source_version,
                                target_version=plan.target_version, source_files=len(plan.source_files),
                                records=plan.records, messages=plan.messages, other_entries=plan.entries_other,
                                source_log_bytes=plan.valid_log_bytes, estimate=est, notes=plan.notes,
                                keeps_raft_indexes=plan.keeps_raft_indexes,
                                blockers=[{"kind": b.kind, "count": b.count, "detail": b.detail, "first_at": b.places}
                                          for b in plan.blockers.values()]))
        else:
            _print_plan(plan, est)
        return
    if dst is None:
        raise UserError("--out DST is required (unless --dry-run)")
    summary = None
    from mqbench.migrate.journal import read_journal
    import os
    existing = read_journal(dst) if os.path.isdir(dst) else None
    if not (do_verify and existing is not None and existing.get("step") == "done" and not resume):
        from mqbench.migrate.source import data_bytes
        progress = _progress(data_bytes(src)) if is_terminal(sys.stderr) else None
        try:
            summary = run_migrate(src, dst, options, resume=resume, force=force, on_progress=progress)
        except KeyboardInterrupt:
            click.echo("", err=True)
            click.echo(f"mqbench: interrupted; DST keeps the migration so far. Continue with:\n  "
                       f"{_resume_command(src, dst, target, codec, compress_over_bytes, segment_bytes, map_timers_to_levels, force)}",
                       err=True)
            sys.exit(130)
        if progress is not None:
            click.echo("", err=True)
    result = verify(src, dst) if do_verify else None
    if as_json:
        print_json(document(SCHEMA, mode="migrate", summary=summary, verify=result))
    else:
        if summary:
            click.echo(f"migrated {summary['source']} ({summary['source_version']}) -> {summary['out']} "
                       f"({summary['target_version']}): {summary['records_in']} records in, {summary['records_out']} "
                       f"records out, {summary['bytes_out']:,} bytes")
            for note in summary["notes"]:
                click.echo(f"note: {note}")
        if result is not None:
            click.echo(f"verify: {'OK' if result['ok'] else 'DIFFERENCES'}: {result['messages_compared']} messages, "
                       f"{result['queues_checked']} queues, {result['offsets_checked']} offsets compared, "
                       f"{result['difference_count']} differences")
            if result["first_difference"]:
                click.echo(f"first difference: {result['first_difference']}")
            for d in result["differences"][1:]:
                click.echo(f"  {d}")
    if result is not None and not result["ok"]:
        sys.exit(1)
