"""``mqbench inspect STORE``: what is in a broker store, read-only (see ``mqbench.inspection.report``)."""
from __future__ import annotations

import json
import sys

import click

from mqbench.cli.options import json_option
from mqbench.output import table


def _printable(text: str) -> str:
    """Control characters shown escaped, so a property cannot break the line or the terminal."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _fmt_props(properties: dict) -> str:
    return " ".join(f"{_printable(k)}={_printable(v)}" for k, v in properties.items())


def _print_text(doc: dict) -> None:
    echo = click.echo
    echo(f"store    {doc['store_path']}")
    echo(f"version  {doc['version']}  ({'; '.join(doc['version_evidence'])})")
    for note in doc["notes"]:
        echo(f"note     {note}")
    echo("")
    echo(table([(f["folder"], f["files"], f["size_bytes"]) for f in doc["files"]], ["folder", "files", "bytes"]))
    for log in doc["logs"]:
        echo("")
        if not log.get("files"):
            echo(f"log {log['folder']}: no files")
            continue
        line = (f"log {log['folder']}: {log['files']} files of {log['file_size_bytes']} bytes, offsets "
                f"{log['min_offset']}..{log['valid_end_offset']}, {log['records']} records")
        if log["dledger"]:
            line += (f", {log['entries']} entries, index {log['first_index']}..{log['last_index']}, "
                     f"last term {log['last_term']}")
            if "committed_index" in log:
                line += f", committed {log['committed_index']}"
            if "current_term" in log:
                line += f", current term {log['current_term']}"
        echo(line)
    timer = doc.get("timer")
    if timer:
        echo(f"timer store: wheel {timer['timerwheel_size_bytes']} bytes, "
             f"{timer.get('timerlog_units', 0)} timer log units, "
             f"last timer queue offset {timer.get('last_timer_queue_offset', '-')}")
    for index in doc.get("index_files", []):
        echo(f"index {index['file']}: {index['items']} items, physical offsets "
             f"{index['begin_physical_offset']}..{index['end_physical_offset']}")
    if doc["topics"]:
        echo("")
        echo(table([(t["topic"], t["cq_type"], t["queues"], t["messages"]) for t in doc["topics"]],
                   ["topic", "queue type", "queues", "messages"]))
    if doc["queues"]:
        echo("")
        echo(table([(q["topic"], q["queue_id"], q["messages"], q["min_offset"], q["max_offset"]) for q in doc["queues"]],
                   ["topic", "queue", "messages", "min offset", "max offset"]))
    if doc["consumer_offsets"]:
        echo("")
        echo(table([(c["group"], c["topic"], c["queue_id"], c["offset"], "" if c["lag_messages"] is None else c["lag_messages"])
                    for c in doc["consumer_offsets"]], ["group", "topic", "queue", "offset", "lag"]))
    if doc["delay_offsets"]:
        echo("")
        echo(table([(d["level"], d["queue_id"], d["offset"]) for d in doc["delay_offsets"]],
                   ["delay level", "queue", "offset"]))
    pop = doc.get("pop") or {}
    if pop.get("groups") or pop.get("bad_records"):
        echo("")
        echo(f"POP state ({', '.join(pop['revive_topics']) or 'no revive log'}; checkpoints not yet revived):")
        if pop.get("groups"):
            echo(table([(g["group"], g["topic"], g["checkpoints"], g["unacked_messages"], g["acked_messages"],
                         "" if g["earliest_revive_time_ms"] is None else g["earliest_revive_time_ms"])
                        for g in pop["groups"]],
                       ["group", "topic", "checkpoints", "unacked (come back)", "acked", "earliest revive ms"]))
        if pop.get("bad_records"):
            echo(f"POP records that do not parse: {pop['bad_records']}")
    echo("")
    if not doc["damage"]:
        echo("damage: none found")
    else:
        counts = ", ".join(f"{k} {v}" for k, v in doc["damage_counts"].items())
        echo(f"damage: {counts}")
        listed: dict[str, int] = {}
        for d in doc["damage"]:
            listed[d["kind"]] = listed.get(d["kind"], 0) + 1
            where = d.get("file", "")
            if d.get("offset") is not None:
                where += f" at offset {d['offset']}"
            echo(f"  {d['kind']}: {where}: {d['detail']}")
        for kind, count in doc["damage_counts"].items():
            if count > listed.get(kind, 0):
                echo(f"  ... and {count - listed.get(kind, 0)} more {kind}; the first {listed.get(kind, 0)} are listed")


def _print_key(store: str, key: str, topic: str | None, as_json: bool) -> None:
    from mqbench.inspection.keys import find_by_key
    from mqbench.broker.store.versions import detect
    from mqbench.output import document, print_json

    detect(store)      # a clear error when STORE is not a store
    found = list(find_by_key(store, key, topic))
    if as_json:
        print_json(document("mqbench.inspect-key/1", store_path=store, key=key, topic=topic, messages=found))
        return
    if not found:
        click.echo(f"no message with key {_printable(key)!r}" + (f" in topic {topic}" if topic else ""))
        return
    click.echo(table([(_printable(m["topic"]), m["queue_id"], m["queue_offset"], m["physical_offset"],
                       m["body_size_bytes"], m["found_by"], _fmt_props(m["properties"])) for m in found],
                     ["topic", "queue", "queue offset", "physical offset", "body bytes", "found by", "properties"]))


@click.command("inspect")
@click.argument("store", type=click.Path(file_okay=True, dir_okay=True))
@json_option
@click.option("--messages", is_flag=True, help="Also list every message: topic, queue, offsets, properties, body size.")
@click.option("--limit", type=click.IntRange(min=0), default=None, metavar="N", help="List at most N messages (with --messages).")
@click.option("--key", default=None, metavar="K",
              help="Only list the messages whose KEYS (or UNIQ_KEY) hold K, found through the store's index/ "
                   "files when it has them (else by reading the log).")
@click.option("--topic", default=None, metavar="T", help="With --key: search topic T only (default: every topic).")
def inspect(store: str, as_json: bool, messages: bool, limit: int | None, key: str | None, topic: str | None) -> None:
    """Show what is in a broker STORE without modifying it.

    Reads stores written by mqbench and by real RocketMQ 4.x/5.x brokers, plain (commitlog/) and
    DLedger (dledger-*/data/): format version, files per folder, topics, queues (message count,
    min and max queue offset), consumer and delay offsets, POP checkpoints and unacked messages per
    consumer group (RocketMQ 5's ck/ack messages on rmq_sys_REVIVE_LOG_*), and damage (torn tail, CRC mismatch,
    consume queues that disagree with the log). Exits 0 when damage is found (it is listed);
    2 when STORE is not a store or cannot be read.
    """
    from mqbench.inspection.report import inspect_store, iter_messages

    if key is not None:
        _print_key(store, key, topic, as_json)
        return
    if topic is not None:
        from mqbench.errors import UserError
        raise UserError("--topic goes with --key")
    doc = inspect_store(store)
    if as_json:
        if not messages:
            json.dump(doc, sys.stdout, indent=2)
            sys.stdout.write("\n")
            return
        # Stream the messages as the last array of the document, one at a time.
        head = json.dumps(doc, indent=2)
        sys.stdout.write(head[:-2] + ',\n  "messages": [')
        first = True
        for msg in iter_messages(store, limit):
            sys.stdout.write(("\n    " if first else ",\n    ") + json.dumps(msg))
            first = False
        sys.stdout.write("\n  ]\n}\n" if not first else "]\n}\n")
        return
    _print_text(doc)
    if messages:
        click.echo("")
        click.echo(f"{'topic':<24} {'queue':>5} {'queue offset':>12} {'physical offset':>16} {'body bytes':>10}  properties")
        for msg in iter_messages(store, limit):
            if msg.get("error"):
                click.echo(f"{'?':<24} {msg['queue_id']:>5} {msg['queue_offset']:>12} {msg['physical_offset']:>16} "
                           f"{'?':>10}  [UNDECODABLE: {_printable(msg['error'])}]")
                continue
            flag = "" if msg["crc_ok"] else "  [CRC MISMATCH]"
            click.echo(f"{_printable(msg['topic']):<24} {msg['queue_id']:>5} {msg['queue_offset']:>12} {msg['physical_offset']:>16} "
                       f"{msg['body_size_bytes']:>10}  {_fmt_props(msg['properties'])}{flag}")
