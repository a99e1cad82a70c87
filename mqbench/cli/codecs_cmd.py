"""``mqbench codecs``: the codec registry, its speed and ratio on real payloads, zstd dictionaries."""
from __future__ import annotations

from pathlib import Path

import click

from mqbench.cli.options import IntList, json_option, seed_option
from mqbench.errors import UserError
from mqbench.output import document, is_terminal, print_json, table

BENCH_SCHEMA = "mqbench.codecs-bench/1"
LIST_SCHEMA = "mqbench.codecs-list/1"
DEFAULT_CODECS = "none,zlib:5,zstd:3,lz4,snappy"


@click.group()
def codecs() -> None:
    """Codec registry: list codecs, benchmark them on workload payloads, train zstd dictionaries."""


@codecs.command("list")
@json_option
def list_codecs(as_json: bool) -> None:
    """List the codecs, their levels and RocketMQ compression-type ids."""
    from mqbench.codecs.registry import CODECS

    rows = [{"codec": info.name, "level_default": info.level_default, "level_min": info.level_min,
             "level_max": info.level_max, "rocketmq_type_id": info.type_id,
             "rocketmq_readable": info.rocketmq_readable, "summary": info.summary} for info in CODECS.values()]
    if as_json:
        print_json(document(LIST_SCHEMA, codecs=rows))
        return
    click.echo(table(([r["codec"], _levels(r), r["rocketmq_type_id"] if r["rocketmq_type_id"] is not None else "-",
                       "yes" if r["rocketmq_readable"] else "no", r["summary"]] for r in rows),
                     ["codec", "levels (default)", "type id", "RocketMQ reads it", "what"]))


def _levels(row: dict) -> str:
    if row["level_default"] is None:
        return "-"
    return f"{row['level_min']}..{row['level_max']} ({row['level_default']})"


@codecs.command("bench")
@click.option("--workload", default="orders", show_default=True, metavar="NAME|FILE",
              help="Payloads: a built-in profile (orders, notifications, iot) or a file of real bodies "
                   "(.parquet trace with a body column, .jsonl, or one body per line).")
@click.option("--codecs", "codec_specs", default=DEFAULT_CODECS, show_default=True, metavar="LIST",
              help="Comma-separated codec specs, e.g. none,zstd:3,lz4,zlib:5.")
@click.option("--batch", "batches", type=IntList(), default="1,16,256", show_default=True,
              help="Batch sizes in messages; each batch is compressed as one unit.")
@click.option("--messages", type=click.IntRange(1, 1_000_000), default=4096, show_default=True,
              help="How many message bodies to measure on.")
@click.option("--dict", "dict_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A zstd dictionary (from `codecs train-dict`); adds dictionary rows for every zstd codec.")
@click.option("--min-time-ms", type=click.IntRange(1, 60_000), default=250, show_default=True,
              help="Repeat each measurement for at least this long.")
@click.option("--vs-direct", is_flag=True, help="Also time each library called directly and report the registry's speed as a ratio to it.")
@click.option("--compress-over", "compress_over_bytes", type=click.IntRange(0, None), default=4096, show_default=True,
              help="Stored-bytes prediction: bodies of at least this many bytes sent alone are compressed "
                   "(RocketMQ's compressMsgBodyOverHowmuch; `mqbench run --compress-over`).")
@click.option("--batch-compression", type=click.Choice(["on", "off"]), default="on", show_default=True,
              help="Stored-bytes prediction: batches compressed whole (`mqbench run --batch-compression`).")
@click.option("--framing", type=click.Choice(["dledger", "commitlog"]), default="dledger", show_default=True,
              help="Stored-bytes prediction: records in DLedger entries (every `mqbench run` layout) or a plain commitlog.")
@seed_option
@json_option
def bench(workload: str, codec_specs: str, batches: list[int], messages: int, dict_path: Path | None,
          min_time_ms: int, vs_direct: bool, compress_over_bytes: int, batch_compression: str, framing: str,
          seed: int, as_json: bool) -> None:
    """Compression ratio and speed of each codec and batch size on a workload's message bodies and,
    for a profile (orders, notifications, iot or a .toml), the bytes a broker stores per message.

    MB/s counts uncompressed bytes in both directions; ratio = uncompressed / compressed. The
    stored-bytes table builds the records the reference broker stores for the profile's messages
    (record headers, properties, batch framing included; one copy): batchable messages, delayed
    messages (never batched, stored twice: parked, then delivered) and the whole workload.
    """
    from mqbench.codecs.bench import bench_cell
    from mqbench.codecs.registry import parse_codec, parse_codec_list
    from mqbench.workloads.sample import load_sample

    codec_list = parse_codec_list(codec_specs)
    if dict_path is not None:
        dictionary = dict_path.read_bytes()
        if not dictionary:
            raise UserError(f"dictionary file {dict_path} is empty")
        zstd_specs = [c for c in codec_list if c.name == "zstd"] or [parse_codec("zstd")]
        codec_list += [parse_codec(f"zstd:{c.level}", dictionary=dictionary) for c in zstd_specs]
    bodies, payload_source = load_sample(workload, messages, seed)
    cells = []
    show_progress = is_terminal() and not as_json
    for codec in codec_list:
        for batch_msgs in batches:
            if show_progress:
                click.echo(f"\r  measuring {codec.spec} at batch {batch_msgs}...\033[K", err=True, nl=False)
            cells.append(bench_cell(codec, bodies, batch_msgs, min_time_ms=min_time_ms, vs_direct=vs_direct))
    stored = _stored_predictions(workload, codec_list, batches, messages, seed, compress_over_bytes,
                                 batch_compression == "on", framing == "dledger")
    if show_progress:
        click.echo("\r\033[K", err=True, nl=False)
    if as_json:
        print_json(document(BENCH_SCHEMA, workload=workload, payload_source=payload_source, seed=seed,
                            messages=len(bodies), body_bytes_avg=sum(map(len, bodies)) / len(bodies),
                            cells=[cell.as_dict() for cell in cells],
                            stored_per_msg=[f.as_dict() for f in stored] if stored is not None else None))
        return
    click.echo(f"workload {workload} ({payload_source}): {len(bodies)} messages, "
               f"{sum(map(len, bodies)) / len(bodies):.0f} B average body")
    headers = ["codec", "batch", "ratio", "comp MB/s", "decomp MB/s", "comp msgs/s", "decomp msgs/s"]
    if vs_direct:
        headers += ["comp vs direct", "decomp vs direct"]
    rows = []
    for c in cells:
        row = [c.codec, c.batch_msgs, f"{c.compression_ratio:.2f}", c.compress_mb_per_s, c.decompress_mb_per_s,
               f"{c.compress_msgs_per_s:,.0f}", f"{c.decompress_msgs_per_s:,.0f}"]
        if vs_direct:
            row += [f"{c.compress_vs_direct_ratio:.3f}", f"{c.decompress_vs_direct_ratio:.3f}"]
        rows.append(row)
    click.echo(table(rows, headers))
    if stored:
        click.echo(_stored_table(workload, stored))


def _stored_predictions(workload: str, codec_list: list, batches: list[int], messages: int, seed: int,
                        compress_over_bytes: int, batch_compression: bool, dledger_framing: bool) -> list | None:
    """``codecs.footprint`` for every codec and batch size on the profile's messages; None when
    ``workload`` is not a profile (a file of bodies has no topics, keys or delays)."""
    from mqbench.codecs.footprint import predict_footprint
    from mqbench.workloads.generator import generate_messages
    from mqbench.workloads.profile import builtin_profiles, load_profile

    if workload not in builtin_profiles() and not workload.endswith(".toml"):
        return None
    profile = load_profile(workload)
    sample = list(generate_messages(profile, seed, count=messages))
    return [predict_footprint(sample, codec, batch_msgs, compress_over_bytes=compress_over_bytes,
                              batch_compression=batch_compression, dledger_framing=dledger_framing)
            for codec in codec_list for batch_msgs in batches]


def _stored_table(workload: str, stored: list) -> str:
    first = stored[0]
    framing = "DLedger entries" if first.dledger_framing else "a plain commitlog"
    rows = [[f.codec, f.batch_msgs, _b(f.batchable_bytes_per_msg), f"{f.batchable_msgs / max(1, f.batchable_records):.1f}",
             _b(f.delayed_parked_bytes_per_msg), _b(f.delayed_delivered_bytes_per_msg),
             _b(f.whole_parked_bytes_per_msg), _b(f.whole_bytes_per_msg)] for f in stored]
    head = (f"\nstored bytes per message, one copy, as the reference broker stores profile {workload} "
            f"({first.messages} messages, {first.delayed_share:.0%} delayed; records in {framing}; compress-over "
            f"{first.compress_over_bytes} B; batch compression {'on' if first.batch_compression else 'off'})\n")
    legend = ("batchable: a message that is not delayed (batched by topic at the batch size); delayed: never batched "
              "(RocketMQ refuses a delay level in a batch), stored alone twice: parked on the delay topic, then "
              "delivered to its topic when due; whole workload before delays come due = batchable + parked (what a run "
              "shorter than the delays stores); whole workload = every copy (the steady state a capacity plan needs). "
              "mqbench run compares its stored bytes with these for its own mix (the note under its table).")
    return head + table(rows, ["codec", "batch", "batchable B/msg", "msgs/record", "delayed parked B/msg",
                               "delayed delivered B/msg", "whole workload before delays due B/msg",
                               "whole workload B/msg"]) + "\n" + legend


def _b(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


@codecs.command("train-dict")
@click.option("--workload", default="orders", show_default=True, metavar="NAME|FILE",
              help="Payloads to train on: a built-in profile or a file of real bodies.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Where to write the dictionary.")
@click.option("--messages", type=click.IntRange(8, 1_000_000), default=4096, show_default=True,
              help="How many bodies to train on.")
@click.option("--size-bytes", type=click.IntRange(256, 16 * 1024 * 1024), default=112_640, show_default=True,
              help="Dictionary size (zstd's default is 110 KiB).")
@click.option("--seed", type=int, default=1001, show_default=True,
              help="Seed for generated payloads; differs from `codecs bench`'s default so the benchmark "
                   "does not measure on the training sample.")
@json_option
def train_dict(workload: str, out_path: Path, messages: int, size_bytes: int, seed: int, as_json: bool) -> None:
    """Train a zstd dictionary on a workload sample; use it with `codecs bench --dict FILE`."""
    from mqbench.codecs.bench import train_dictionary
    from mqbench.workloads.sample import load_sample

    bodies, payload_source = load_sample(workload, messages, seed)
    try:
        dictionary = train_dictionary(bodies, size_bytes)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    out_path.write_bytes(dictionary)
    if as_json:
        print_json(document("mqbench.codecs-train-dict/1", out=str(out_path), dict_bytes=len(dictionary),
                            samples=len(bodies), payload_source=payload_source))
    else:
        click.echo(f"wrote {len(dictionary)} byte zstd dictionary to {out_path} "
                   f"(trained on {len(bodies)} bodies from {payload_source})")
