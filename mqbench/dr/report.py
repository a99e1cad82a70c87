"""DR results: the comparison table and the result folder ``mqbench dr`` writes.

Result folder ``results/<UTC time>-dr-<short hash>/`` (written under a temporary name and renamed
into place, like ``mqbench run``'s) with ``result.json`` and ``table.md``. ``result.json``, schema
``mqbench.dr-result/1``:

=========================  ===========================================================================
field                      meaning
=========================  ===========================================================================
``schema``                 ``"mqbench.dr-result/1"``
``tool_version``           mqbench version
``created_utc``            drill start, ISO 8601 UTC
``git``                    ``commit`` and ``dirty`` of the checkout
``seed``                   the ``--seed`` of link jitter/loss draws and bodies
``command_line``           argv of the run
``machine``                ``mqbench.limits.machine_info()``
``settings``               the drill settings: phases in ms, rate, burst, workload, durability, ``ray``
                           (the Ray cluster's address, or null)
``drills[]``               one per (scheme, fault), fields below
=========================  ===========================================================================

``drills[]`` fields (``DrillResult.row``): ``scheme``, ``layout``, ``fault``, ``target``,
``rpo_promised_zero`` (the layout's ``[dr] survives`` covers this fault on this target),
``acked_msgs``, ``rpo_lost_msgs`` (acknowledged and not served after the drill),
``lost_seqs_first`` (up to 20 lost sequence numbers), ``duplicates_msgs`` (deliveries beyond the
first to the drill's consumer group), ``detection_ms``, ``election_ms``, ``leader_readiness_ms``,
``client_recovery_ms``, ``rto_ms`` (see ``mqbench.dr.measure``; null = not observed),
``write_latency_ms_p50_no_rooms`` (links transparent), ``write_latency_ms_p50``,
``write_latency_ms_p99`` and ``write_latency_added_ms_p50`` (with the layout's links),
``instances`` (broker processes of the scheme), ``cross_room_bytes_per_msg`` (bytes crossing a room
boundary per acknowledged message, or per replicated message for scheme C), ``notes``,
``ray_nodes`` (host -> ``hostname/ip`` of its Ray node with ``--cluster ray://...``, else null; the
no-rooms latency, the added latency and the cross-room bytes are then null: the links are real).
"""
from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from mqbench import __version__
from mqbench.errors import UserError
from mqbench.harness.results import git_info
from mqbench.output import table

SCHEMA = "mqbench.dr-result/1"
COLUMNS = [  # (header, row key, legend line)
    ("scheme", "scheme", "DR scheme drilled (A, B, C: see `mqbench dr --help`)"),
    ("fault", "fault", "what was failed (--fault): an instance, a host, a room, or a partition between rooms"),
    ("target", "target", "the instance or room the fault hit"),
    ("RPO 0 promised", "rpo_promised_zero", "the layout's [dr] survives covers this fault on this target"),
    ("acked", "acked_msgs", "messages acknowledged to the drill's producer"),
    ("lost (RPO)", "rpo_lost_msgs", "acknowledged messages not served after the drill (the recovery point)"),
    ("dup", "duplicates_msgs", "deliveries beyond the first to the drill's consumer group"),
    ("detect ms", "detection_ms", "fault to a surviving replica noticing the leader is gone (scheme C: the "
                                  "health check giving up on the room)"),
    ("elect ms", "election_ms", "detection to a surviving replica leading a newer term (scheme C: 0)"),
    ("ready ms", "leader_readiness_ms", "election to the name server routing writes to the new leader (scheme C: "
                                        "clients switched to the standby)"),
    ("client ms", "client_recovery_ms", "readiness to the first ack of a send issued after the fault"),
    ("RTO ms", "rto_ms", "fault to that first ack (the recovery time); - when writes never came back"),
    ("write p50 ms", "write_latency_ms_p50", "send latency with the layout's room links, median"),
    ("rooms add ms", "write_latency_added_ms_p50", "median send latency the room links add"),
    ("instances", "instances", "broker processes of the scheme"),
    ("x-room B/msg", "cross_room_bytes_per_msg", "bytes crossing a room boundary per message"),
]


def _cell(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "-"
    return value


def render_table(rows: list[dict], markdown: bool = False) -> str:
    """The comparison table, one line per drill (``-``: not observed / not applicable)."""
    headers = [h for h, _k, _legend in COLUMNS]
    cells = [[_cell(row.get(k)) for _h, k, _legend in COLUMNS] for row in rows]
    if not markdown:
        return table(cells, headers)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def check_document(doc: object, where: str) -> dict:
    """``doc`` when it is a DR result ``mqbench report`` can render (schema, drills as objects);
    else UserError naming ``where`` and the problem."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise UserError(f"{where}: not a {SCHEMA} result")
    drills = doc.get("drills")
    if not isinstance(drills, list) or not all(isinstance(d, dict) for d in drills):
        raise UserError(f"{where}: drills must be a list of objects")
    return doc


def build_document(rows: list[dict], *, seed: int, command_line: list[str], machine: dict, settings: dict,
                   created_utc: datetime | None = None, git: dict | None = None) -> dict:
    created = (created_utc or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return {"schema": SCHEMA, "tool_version": __version__, "created_utc": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "git": git if git is not None else git_info(Path(__file__).parent), "seed": seed,
            "command_line": list(command_line), "machine": dict(machine), "settings": dict(settings),
            "drills": list(rows)}


def write_document(doc: dict, results_dir: str | os.PathLike) -> Path:
    """Write ``result.json`` and ``table.md`` into a new result folder, atomically; its path."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    commit = (doc.get("git") or {}).get("commit")
    base = f"{doc['created_utc'].replace('-', '').replace(':', '')}-dr-{commit[:7] if commit else 'nogit'}"
    final, suffix = results_dir / base, 2
    while final.exists():
        final, suffix = results_dir / f"{base}-{suffix}", suffix + 1
    temporary = results_dir / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        for name, text in (("result.json", json.dumps(doc, indent=1, allow_nan=False) + "\n"),
                           ("table.md", render_table(doc["drills"], markdown=True))):
            with open(temporary / name, "wb") as handle:
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
        os.rename(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return final
