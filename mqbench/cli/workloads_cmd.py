"""``mqbench workloads``: built-in profiles, what a workload looks like, and recorded traces.

Thin: parsing and validation live in ``mqbench.workloads``; this module turns flags into calls and
results into tables or versioned JSON documents.
"""
from __future__ import annotations

from pathlib import Path

import click

from mqbench.cli.options import DurationMs, json_option, seed_option
from mqbench.errors import UserError
from mqbench.output import document, is_terminal, print_json, table

LIST_SCHEMA = "mqbench.workloads-list/1"
SHOW_SCHEMA = "mqbench.workload-show/1"
WRITE_SCHEMA = "mqbench.workloads-write/1"
DEFAULT_CODECS = "none,zlib:5,zstd:3,lz4,snappy"
_PROGRESS_EVERY = 20_000


@click.group()
def workloads() -> None:
    """Workload profiles (orders, notifications, iot) and recorded traces (Parquet)."""


@workloads.command("list")
@json_option
def list_profiles(as_json: bool) -> None:
    """List the built-in profiles with a one-line summary each."""
    from mqbench.workloads.profile import builtin_profiles, load_profile

    rows = []
    for name in builtin_profiles():
        profile = load_profile(name)
        rows.append({"profile": name, "topics": [t.name for t in profile.topics],
                     "base_msgs_per_s": profile.rate.base_msgs_per_s, "rate_shape": profile.rate.shape,
                     "delayed_share": profile.delayed_share, "producers": profile.producers.count,
                     "consumer_groups": [c.group for c in profile.consumers], "summary": profile.description})
    if as_json:
        print_json(document(LIST_SCHEMA, profiles=rows))
        return
    click.echo(table(([r["profile"], len(r["topics"]), f"{r['base_msgs_per_s']:,.0f}", r["rate_shape"],
                       f"{r['delayed_share']:.0%}", r["summary"]] for r in rows),
                     ["profile", "topics", "base msgs/s", "shape", "delayed", "what"]))


@workloads.command("show")
@click.argument("source", metavar="NAME|FILE")
@click.option("--messages", type=click.IntRange(1, 10_000_000), default=5000, show_default=True,
              help="How many messages to generate (profile) or read (trace) for the statistics.")
@click.option("--codecs", "codec_specs", default=DEFAULT_CODECS, show_default=True, metavar="LIST",
              help="Codecs whose compression ratio on the real bodies is shown.")
@click.option("--batch", "batch_msgs", type=click.IntRange(2, 100_000), default=32, show_default=True,
              help="Batch size for the batched compression ratio.")
@click.option("--start", "start_ms", type=DurationMs(), default="0s", show_default=True,
              help="Where on the profile's rate shape the messages start, e.g. 20h for a diurnal evening peak.")
@seed_option
@json_option
def show(source: str, messages: int, codec_specs: str, batch_msgs: int, start_ms: int, seed: int,
         as_json: bool) -> None:
    """What a profile (name or .toml) or a trace (.parquet) carries: rates, sizes, delays, keys, compression."""
    from mqbench.codecs.registry import parse_codec_list
    from mqbench.workloads.source import open_workload
    from mqbench.workloads.stats import summarize

    codecs = parse_codec_list(codec_specs)
    workload = open_workload(source, seed, count=messages, shape_start_ms=start_ms)
    profile, info = workload.profile, workload.trace
    stats = summarize(workload.messages, codecs, batch_msgs)
    doc = {"source": source, "kind": "trace" if info else "profile", "seed": info.seed if info else seed}
    if info is None:
        doc.update(_profile_fields(profile), shape_start_ms=start_ms)
    else:
        doc.update(trace={"messages": info.messages, "row_groups": info.row_groups, "source": info.source,
                          "source_detail": info.source_detail, "profile": info.profile, "seed": info.seed,
                          "generator_version": info.generator_version})
    doc["sample"] = stats
    if as_json:
        print_json(document(SHOW_SCHEMA, **doc))
        return
    _print_show(doc)


def _profile_fields(profile) -> dict:
    rate = profile.rate
    return {
        "profile": profile.name, "description": profile.description, "path": profile.source,
        "rate": {"shape": rate.shape, "arrivals": rate.arrivals, "base_msgs_per_s": rate.base_msgs_per_s,
                 "burst_factor": rate.burst_factor, "burst_length_ms": rate.burst_length_ms,
                 "burst_every_ms": rate.burst_every_ms, "describe": rate.describe(), **rate.summary()},
        "delayed_share": profile.delayed_share,
        "producers": {"count": profile.producers.count, "send": profile.producers.send},
        "topics": [{"topic": t.name, "queues": t.queues, "batch": t.batch, "batch_msgs": t.batch_msgs,
                    "share": t.share, "body_model": t.body_model, "key": t.key.describe(),
                    "tags": t.tags_field and f"body field {t.tags_field}" or ", ".join(v for v, _ in t.tags) or "none",
                    "delay": t.delay.describe()} for t in profile.topics],
        "consumers": [{"group": c.group, "topics": list(c.topics), "count": c.count, "subscription": c.subscription,
                       "processing_ms_distribution": c.processing_ms.describe(),
                       "processing_ms_mean": c.processing_ms.mean()}
                      for c in profile.consumers],
        "rate_timeline": rate.timeline(),
    }


def _print_show(doc: dict) -> None:
    from mqbench.workloads.profile import format_duration_ms

    sample = doc["sample"]
    if doc["kind"] == "profile":
        click.echo(f"profile {doc['profile']}: {doc['description']}")
        r = doc["rate"]
        click.echo(f"rate: {r['describe']}, {r['arrivals']} arrivals; over {format_duration_ms(r['horizon_ms'])}: "
                   f"min {r['rate_msgs_per_s_min']:,.0f}, mean {r['rate_msgs_per_s_mean']:,.0f}, "
                   f"max {r['rate_msgs_per_s_max']:,.0f} msgs/s")
        timeline = doc["rate_timeline"]
        step = format_duration_ms(timeline[1]["start_ms"]) if len(timeline) > 1 else "-"
        click.echo(f"mean rate per {step} (msgs/s): "
                   + " ".join(f"{point['rate_msgs_per_s_mean']:,.0f}" for point in timeline))
        click.echo(f"producers: {doc['producers']['count']} ({doc['producers']['send']} send); "
                   f"delayed: {doc['delayed_share']:.1%} of messages")
        click.echo()
        click.echo(table(([t["topic"], t["queues"], f"{t['batch_msgs']}" if t["batch"] else "no", f"{t['share']:.1%}",
                           t["body_model"], t["key"], t["tags"], t["delay"]] for t in doc["topics"]),
                         ["topic", "queues", "batch", "share", "body", "key", "tags", "delay"]))
        if doc["consumers"]:
            click.echo()
            click.echo(table(([c["group"], ", ".join(c["topics"]), c["count"], c["subscription"],
                               f"{c['processing_ms_distribution']} ms"] for c in doc["consumers"]),
                             ["consumer group", "topics", "consumers", "subscription", "processing"]))
    else:
        t = doc["trace"]
        click.echo(f"trace {doc['source']}: {t['messages']:,} messages in {t['row_groups']} row groups, "
                   f"{t['source']} ({t['source_detail'] or t['profile'] or '-'}), seed {t['seed']}")
    click.echo()
    if not sample["messages"]:
        click.echo("sample: no messages")
        return
    b = sample["body_bytes"]
    rate = sample["observed_msgs_per_s"]
    click.echo(f"sample: {sample['messages']:,} messages over {sample['duration_s']:.2f} s"
               + (f" ({rate:,.0f} msgs/s)" if rate else ""))
    click.echo(f"body bytes: avg {b['avg']:,.0f}, min {b['min']:,}, p50 {b['p50']:,}, p90 {b['p90']:,}, "
               f"p99 {b['p99']:,}, max {b['max']:,}; over 4 KiB (RocketMQ compresses): "
               f"{sample['bodies_over_4kib_share']:.1%}")
    d = sample["delay"]
    if d["delayed_share"]:
        levels = ", ".join(f"level {level}: {n:,}" for level, n in d["by_level"].items())
        click.echo(f"delays: {d['delayed_share']:.1%} delayed, p50 {format_duration_ms(d['delay_ms_p50'])}, "
                   f"p99 {format_duration_ms(d['delay_ms_p99'])}, max {format_duration_ms(d['delay_ms_max'])}"
                   + (f"; {levels}" if levels else "") + (f"; arbitrary: {d['arbitrary']:,}" if d["arbitrary"] else ""))
    else:
        click.echo("delays: none")
    click.echo()
    click.echo(table(([t["topic"], f"{t['messages']:,}", f"{t['share']:.1%}", f"{t['body_bytes_avg']:,.0f}",
                       f"{t['keys_distinct']:,}", f"{t['key_top_share']:.2%}", f"{t['keyless_share']:.0%}",
                       f"{t['tags_distinct']:,}", ", ".join(x["tag"] for x in t["tags_top"][:3]),
                       f"{t['delayed_share']:.1%}"] for t in sample["topics"]),
                     ["topic", "messages", "share", "body B avg", "keys", "top key", "no key", "tags", "top tags",
                      "delayed"]))
    if sample["compression"]:
        click.echo()
        batch = sample["compression"][0]["batch_msgs"]
        topics = sample["topics"]
        click.echo(table(([c["codec"], f"{c['ratio_per_message']:.2f}",
                           f"{c['ratio_batch']:.2f}" if c["ratio_batch"] else "-"]
                          + [_ratio(t["compression_ratio_per_message"].get(c["codec"])) for t in topics]
                          for c in sample["compression"]),
                         ["codec", "ratio per message", f"ratio per {batch}-message batch"]
                         + [f"{t['topic']} per message" for t in topics]))


def _ratio(value: float | None) -> str:
    return f"{value:.2f}" if value else "-"


@workloads.command("generate")
@click.argument("profile_name", metavar="NAME|FILE")
@click.option("--messages", type=click.IntRange(1, 10**12), help="Stop after this many messages.")
@click.option("--duration", "duration_ms", type=DurationMs(), help="Stop at this much traffic time (e.g. 10m).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The trace file to write (Parquet, mqbench.trace/1).")
@click.option("--start", "start_ms", type=DurationMs(), default="0s", show_default=True,
              help="Where on the profile's rate shape the messages start, e.g. 20h for a diurnal evening peak.")
@seed_option
@json_option
def generate(profile_name: str, messages: int | None, duration_ms: int | None, out_path: Path, start_ms: int,
             seed: int, as_json: bool) -> None:
    """Write a trace of a profile's messages; the same seed gives an identical file."""
    from mqbench.workloads.generator import GENERATOR_VERSION, generate_messages
    from mqbench.workloads.profile import load_profile
    from mqbench.workloads.trace import TraceWriter

    if messages is None and duration_ms is None:
        raise UserError("give --messages N, --duration D or both: a profile's traffic never ends by itself")
    if duration_ms is not None and duration_ms <= 0:
        raise UserError("--duration must be above 0")
    profile = load_profile(profile_name)
    _check_out(out_path)
    with TraceWriter(out_path, source="generated", source_detail=profile.source, profile=profile.name,
                     profile_document=profile.document, seed=seed, generator_version=GENERATOR_VERSION) as writer:
        last_offset_us = 0
        for message in generate_messages(profile, seed, count=messages, duration_ms=duration_ms,
                                         shape_start_ms=start_ms):
            writer.write(message)
            last_offset_us = message.send_offset_us
            _progress(writer.messages, messages, as_json)
    _progress_done(as_json)
    _report_written(out_path, writer.messages, writer.body_bytes, last_offset_us, as_json,
                    profile=profile.name, seed=seed, shape_start_ms=start_ms)


def _check_out(out_path: Path) -> None:
    if not out_path.parent.exists():
        raise UserError(f"--out {out_path}: folder {out_path.parent} does not exist")
    if out_path.is_dir():
        raise UserError(f"--out {out_path} is a directory")


def _progress(done: int, total: int | None, quiet: bool) -> None:
    if done % _PROGRESS_EVERY == 0 and not quiet and is_terminal():
        of = f" of {total:,}" if total else ""
        click.echo(f"\r  {done:,}{of} messages...\033[K", err=True, nl=False)


def _progress_done(quiet: bool) -> None:
    if not quiet and is_terminal():
        click.echo("\r\033[K", err=True, nl=False)


def _report_written(out_path: Path, messages: int, body_bytes: int, last_offset_us: int, as_json: bool,
                    **extra) -> None:
    if as_json:
        print_json(document(WRITE_SCHEMA, out=str(out_path), messages=messages, body_bytes=body_bytes,
                            duration_s=last_offset_us / 1e6, file_bytes=out_path.stat().st_size, **extra))
        return
    click.echo(f"wrote {messages:,} messages ({body_bytes / 1e6:,.1f} MB of bodies, {last_offset_us / 1e6:,.1f} s "
               f"of traffic) to {out_path} ({out_path.stat().st_size / 1e6:,.1f} MB)")


@workloads.command("import")
@click.argument("source", metavar="FILE.jsonl|csv|parquet", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The trace file to write (Parquet, mqbench.trace/1).")
@click.option("--format", "file_format", type=click.Choice(["jsonl", "csv", "parquet"]),
              help="Input format; default from the suffix (.jsonl/.ndjson/.json, .csv/.tsv, .parquet).")
@click.option("--time-column", default="timestamp", show_default=True, help="Column with the send time.")
@click.option("--time-format", type=click.Choice(["auto", "epoch-s", "epoch-ms", "epoch-us", "iso8601"]),
              default="auto", show_default=True,
              help="How times are written; auto tells epoch s/ms/us apart by magnitude and reads ISO-8601 text.")
@click.option("--body-column", default="body", show_default=True, help="Column with the message body.")
@click.option("--body-encoding", type=click.Choice(["utf8", "base64", "hex"]), default="utf8", show_default=True,
              help="How text bodies are encoded (binary Parquet bodies are taken as they are).")
@click.option("--topic-column", help="Column with the topic [default: topic].")
@click.option("--topic", help="Topic for rows without a topic column or value.")
@click.option("--key-column", help="Column with message keys [default: key, if present].")
@click.option("--tags-column", help="Column with the tag [default: tags, if present].")
@click.option("--properties-column",
              help="Column with user properties, a JSON object [default: properties, if present].")
@click.option("--delay-column", help="Column with the delivery delay in ms [default: delay_ms, if present].")
@click.option("--reorder-window", "reorder_window_ms", type=DurationMs(), default="10s", show_default=True,
              help="Rows out of time order by up to this much are put back in order (held in memory).")
@click.option("--skip-bad", is_flag=True, help="Skip rows that do not parse (reported on stderr) instead of stopping.")
@json_option
def import_cmd(source: Path, out_path: Path, file_format: str | None, time_column: str, time_format: str,
               body_column: str, body_encoding: str, topic_column: str | None, topic: str | None,
               key_column: str | None, tags_column: str | None, properties_column: str | None,
               delay_column: str | None, reorder_window_ms: int, skip_bad: bool, as_json: bool) -> None:
    """Convert an export of real traffic into a trace that `mqbench run` can replay."""
    from mqbench.workloads.importer import ImportOptions, import_trace

    _check_out(out_path)
    if out_path.resolve() == source.resolve():
        raise UserError("--out must differ from the file being imported")
    options = ImportOptions(time_column=time_column, body_column=body_column, topic_column=topic_column,
                            key_column=key_column, tags_column=tags_column, properties_column=properties_column,
                            delay_column=delay_column, topic=topic, time_format=time_format,
                            body_encoding=body_encoding, file_format=file_format,
                            reorder_window_ms=reorder_window_ms, skip_bad=skip_bad)
    result = import_trace(source, out_path, options, progress=lambda done: _progress(done, None, as_json))
    _progress_done(as_json)
    for where, reason in result.skipped[:10]:
        click.echo(f"mqbench: skipped {source} {where}: {reason}", err=True)
    if result.skipped_count > 10:
        click.echo(f"mqbench: ... and {result.skipped_count - 10} more bad rows skipped", err=True)
    _report_written(out_path, result.messages, result.body_bytes, result.duration_us, as_json,
                    source=str(source), skipped_rows=result.skipped_count,
                    skipped=[{"where": w, "reason": r} for w, r in result.skipped])


@workloads.command("record")
@click.option("--namesrv", required=True, metavar="ADDR", help="Name server address(es), host:port[;host:port].")
@click.option("--topic", "topics", required=True, multiple=True, metavar="T",
              help="Topic to capture (repeat for several).")
@click.option("--duration", "duration_ms", type=DurationMs(), required=True, help="How long to capture (e.g. 5m).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The trace file to write (Parquet, mqbench.trace/1).")
@click.option("--group", default="mqbench_record", show_default=True,
              help="Consumer group of the recorder; its own, so no real group loses messages.")
@click.option("--subscription", default="*", show_default=True, help="Tag expression, e.g. 'PAID || SHIPPED'.")
@click.option("--messages", "messages_max", type=click.IntRange(1, 10**12), help="Stop after this many messages.")
@click.option("--reorder-window", "reorder_window_ms", type=DurationMs(), default="2s", show_default=True,
              help="Messages arriving out of born-time order by up to this much are put back in order.")
@json_option
def record(namesrv: str, topics: tuple[str, ...], duration_ms: int, out_path: Path, group: str, subscription: str,
           messages_max: int | None, reorder_window_ms: int, as_json: bool) -> None:
    """Capture live traffic from a running cluster (RocketMQ or mqbench's) into a trace."""
    import asyncio
    import time

    from mqbench.client import Consumer
    from mqbench.workloads.record import record_trace

    if duration_ms <= 0:
        raise UserError("--duration must be above 0")
    _check_out(out_path)
    addrs = [a.strip() for a in namesrv.split(";") if a.strip()]
    consumer = Consumer(addrs, group, consume_from="last")
    for topic in topics:
        consumer.subscribe(topic, subscription)

    def clock_ms() -> int:
        return int(time.time() * 1000)

    async def capture():
        return await record_trace(consumer, out_path, duration_ms=duration_ms, clock_ms=clock_ms,
                                  messages_max=messages_max, reorder_window_ms=reorder_window_ms,
                                  source_detail=f"{namesrv} topics {','.join(topics)} group {group}",
                                  progress=lambda done: _progress(done, messages_max, as_json))

    result = asyncio.run(capture())
    _progress_done(as_json)
    if result.interrupted:
        click.echo("mqbench: capture interrupted; keeping what was recorded", err=True)
    if not result.messages:
        click.echo(f"mqbench: no messages received in {duration_ms / 1000:g} s; is anything sending to "
                   f"{', '.join(topics)}?", err=True)
    if result.before_start or result.late_clamped:
        click.echo(f"mqbench: {result.before_start} messages born before the capture skipped, "
                   f"{result.late_clamped} late messages placed at the time of the previous one", err=True)
    _report_written(out_path, result.messages, result.body_bytes, result.duration_us, as_json,
                    namesrv=namesrv, topics=dict(result.topics), before_start=result.before_start,
                    late_clamped=result.late_clamped, interrupted=result.interrupted)
