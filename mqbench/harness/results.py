"""Result folders: ``results/<UTC time>-<profile>-<short hash>/`` with everything a run measured.

Folder name: ``20261124T171500Z-orders-1a2b3c4`` (UTC start time, profile name or trace file stem,
first 7 hex digits of the git commit, ``nogit`` outside a checkout; ``-2``, ``-3``... appended if
the name is taken). Files:

* ``result.json``: the document below;
* ``timeseries.parquet``: one row per (cell, window): ``cell`` then every per-window field of
  ``cells[].windows`` (same names and units);
* ``table.md``: the table ``mqbench report`` prints for this result, in markdown.

The folder is written under a temporary name and renamed into place, so a reader never sees a
half-written result.

``result.json``, schema ``mqbench.result/2`` (field by field). ``/2`` added the cell verdicts and
changed what a cell's capacity means (only a finished ``--rate max`` search has one); the loader
still reads ``/1`` files and judges their cells by the same rules (``harness.verdict``).

==============================  ====================================================================
field                           meaning
==============================  ====================================================================
``schema``                      ``"mqbench.result/2"``; a breaking change bumps the number
``tool_version``                mqbench version that wrote the file
``created_utc``                 run start, ISO 8601 UTC (``2026-11-24T17:15:00Z``)
``git.commit``                  full commit hash of the mqbench checkout, or null outside git
``git.dirty``                   true when the checkout had uncommitted changes (null outside git)
``seed``                        the ``--seed`` every random choice was drawn from
``command_line``                the argv list that produced the run
``machine``                     ``cpu_model``, ``cpu_cores``, ``memory_bytes``, ``kernel``,
                                ``python``, ``hostname`` (``mqbench.limits.machine_info``)
``native``                      each compiled accelerator (``mqbench.native.MODULES``) and whether
                                the process that wrote the result used it (``native.report()``:
                                false when not built or under ``MQBENCH_NATIVE=0``), e.g.
                                ``{"mqbench.migrate._scan": true}``; absent in older results
``limits``                      the ``mqbench limits`` figures measured in the same run (the
                                ``mqbench.limits/1`` fields: ``disk_write_fdatasync_mb_per_s``,
                                ``disk_fdatasync_per_s``, ``loopback_small_frames_per_s``,
                                ``loopback_mb_per_s``, ``codecs``), or null when not measured
``layout``                      ``name``, ``hosts``, ``groups``, ``replicas_per_group``,
                                ``instances``, ``instances_per_host``; for a ``--target`` cluster
                                also ``brokers`` (broker name -> replica addresses, master first)
                                and ``source`` (``cluster info``, or the topic-route fallback)
``workload``                    ``profile`` (name or null), ``trace_file`` (path or null),
                                ``trace_sha256`` (hex or null), ``description``
``codec``                       codec settings of the run (e.g. ``{"spec": "zstd:3"}``); cells
                                override in their ``settings``
``batch``                       batching and delay settings (e.g. ``batch_msgs``, ``linger_ms``,
                                ``delay_scheme``)
``payload_source``              where bodies came from (``{"kind": "trace"|"profile", ...}``)
``warmup_ms``                   warm-up discarded before measuring
``duration_ms``                 measured phase length
``window_ms``                   per-window series granularity (10000)
``cells[]``                     one per matrix cell (a plain run has one):
``cells[].name``                e.g. ``codec=zstd:3,batch=64``
``cells[].settings``            the cell's settings (codec, batch, ...)
``cells[].aggregates``          whole-run figures: counts, ``throughput_msgs_per_s``,
                                ``throughput_mb_per_s``, ``consume_msgs_per_s``, latency percentiles
                                ``{publish_latency,publish_delay,e2e_latency}_ms_{p50,p75,p95,p99,
                                p999,p9999,max,mean}``, signed ``delay_error_ms_{p1,p50,p99,p999,
                                min,max}``, ``early_deliveries``, ``sustainable_rate_per_s`` (null
                                unless found by a ``--rate max`` search) (``metrics.Window.summary``)
``cells[].histograms``          whole-run HdrHistograms, compressed base64 (values in us):
                                ``publish_latency``, ``publish_delay``, ``e2e_latency``,
                                ``delay_error_late``, ``delay_error_early``
``cells[].windows[]``           per-window aggregates, same names as ``aggregates`` plus
                                ``window_index`` and ``window_start_ms`` (from measuring start);
                                consumption per window and whole-run: ``redeliveries``
                                (reconsumeTimes > 0), ``duplicates`` (a message id the group had
                                already received, per consumer worker), ``consume_gap_ms_max`` (the
                                longest time between two deliveries from one queue, over the
                                queues; null without deliveries), ``e2e_latency_ms_p999``
                                (``metrics`` module doc)
``cells[].settings.consume``    ``pull`` or ``pop`` (``--consume``, the ``consume`` axis)
``cells[].settings.consumer_scenario``  ``members`` (consumers per group per worker),
                                ``churn_interval_ms`` (0: no rolling restart), ``slow`` (one
                                member 10x slower), ``processing_us``, ``invisible_time_ms``
``cells[].disk_bytes_per_msg``  commitlog + queue bytes on disk per message, or null
``cells[].replication_bytes``   bytes sent between replicas during the measured phase, or null
``cells[].cpu_s_per_million_msgs``  CPU seconds of all broker processes per million messages, or null
``cells[].max_rate_search``     the ``mqbench.max-rate/1`` search record, or null (its
                                ``capacity_msgs_per_s``, ``first_unheld_rate_msgs_per_s``,
                                ``hold_achieved_msgs_per_s``: ``harness.maxrate``; from ``mqbench
                                run`` also ``hold_publish_latency_ms_p50``/``_p99``: over the
                                hold's and soak's checks at the capacity; ``capacity_checks_held``
                                (checks in a row the capacity held), ``capacity_soaked`` (a whole
                                soak, not one the budget shortened), ``capacity_soaks_held`` (whole
                                soaks at the capacity that held: 2 when its confirmation soak after a
                                drain held too), ``soak_failed`` (each failed soak: its rate, what
                                the failing check absorbed, whether the rate was soaked again,
                                ``repeated``, or lowered, and ``confirming``: it was the
                                confirmation of a soak that had held); ``machine_pace``: the
                                machine's pace during each check, as context (``run.pace``:
                                ``by_check`` [check, CPU ns per step of a fixed loop, steal
                                share], medians over the search and at the capacity))
``cells[].verdict``             ``held``, ``saturated`` or ``failed`` (``harness.verdict``)
``cells[].verdict_signals``     what made a cell saturated or failed: ``achieved under offered``,
                                ``publish delay growing``, ``send backlog``, ``consume backlog``,
                                ``errors``, ``search unfinished``, ``nothing acknowledged``; ``[]``
                                when held
``cells[].verdict_detail``      one line per signal with its figures and bound (or what held)
``cells[].offered_msgs_per_s``  load offered in the measured phase (fixed rate: the rate; profile:
                                scheduled messages / duration; max: the capacity found), or null
``cells[].achieved_msgs_per_s`` messages intended in the measured phase and acknowledged within
                                the ack grace (1 s) after it, per second of the phase: the count
                                the verdict judges (``harness.verdict``), so it never exceeds
                                offered by more than the pacer's edge (max: what the system
                                absorbed during the hold at the capacity), or null
``cells[].capacity_msgs_per_s`` ``--rate max`` only: the offered rate that held every check of its
                                hold (the repeat) and soak (``--soak-checks``); null for fixed-rate
                                cells, which never report a capacity, and for an unfinished search
``cells[].first_unheld_rate_msgs_per_s``  ``--rate max`` only: the lowest rate above the capacity
                                that failed twice (two checks, or over a hold); else null
==============================  ====================================================================

Fields other parts of ``mqbench run`` add to cells (optional: a report renders them when present
and shows ``-`` when not):

======================================  ============================================================
field                                   meaning
======================================  ============================================================
``cells[].layout``                      the cell's own ``layout`` field (same keys as ``layout``)
                                        when the matrix varies the layout; else absent
``cells[].batch_achieved``              ``records_total``, ``msgs_total``, ``msgs_per_record_mean``,
                                        ``msgs_per_record_p50``, ``msgs_per_record_p99``: messages
                                        per stored record, from the broker's store
``cells[].disk_user_bytes_per_msg``     bytes on disk of user records per message, all replicas
``cells[].disk_meta_bytes_total``       bytes on disk of broker metadata (offsets, config)
``cells[].broker_cpu_us_per_msg``       CPU of the broker processes per acknowledged message
``cells[].client_cpu_us_per_msg``       CPU of the load generator's processes per message
``cells[].broker_cpu_machine_share``    share of the machine's CPU the brokers used
``cells[].client_cpu_machine_share``    share of the machine's CPU the load generator used
======================================  ============================================================

Fields ``mqbench run`` adds (optional for the loader, which ignores what it does not know):

==========================================  ========================================================
field                                       meaning
==========================================  ========================================================
``run_id``, ``target``, ``rate``            the run's id (also the ``mqbRun`` property on every
                                            message), the name server of ``--target`` (null for
                                            embedded), the offered rate (msgs/s, "profile", "max")
``workers``                                 ``producers``, ``consumers``, ``in_flight_max``,
                                            ``producers_basis``: how ``--producers auto`` chose
                                            (``cpus``, ``broker_processes``, ``consumers``,
                                            ``spare_cpus``, ``note`` when no core was to spare);
                                            null when ``--producers N`` was given
``failed_cells[]``                          ``name`` and ``error`` of cells that failed (with
                                            ``--keep-going``)
``cells[].settings.payload``                the measured compression of the run's own payloads
                                            under the cell's codec (``mqbench.run.payload``)
``cells[].settings.batch_msgs_by_topic``    messages per batch send, per topic
``cells[].aggregates.*_total``              whole-run counts, warm-up included: ``intended_msgs``,
                                            ``acked_msgs``, ``publish_errors``, ``delayed_acked``,
                                            ``expected_deliveries``, ``consumed_undelayed``
``cells[].aggregates.publish_backlog_msgs_end``   due but unsent at the end of the measured phase
``cells[].aggregates.consume_backlog_msgs_end``   owed deliveries not yet consumed at that moment
``cells[].aggregates.consume_backlog_msgs_after_drain``  the same after the drain period
``cells[].aggregates.measured_offered_msgs``  messages intended in the measured phase: sent, or
                                            due and unsent at its end
``cells[].aggregates.measured_acked_msgs``  of those, acknowledged (whenever the ack came)
``cells[].aggregates.measured_acked_on_time_msgs``  of those, acknowledged within the verdict's
                                            ack grace (1 s) after the phase ended: the count
                                            ``achieved under offered`` judges (``harness.verdict``)
``cells[].aggregates.delayed_pending_msgs_end``  deliveries of delayed messages owed and not yet
                                            received when the cell ended (not due: not a backlog)
``cells[].windows[].publish_backlog_msgs``  both backlogs at the end of each window (null before
``cells[].windows[].consume_backlog_msgs``  the first sample)
``cells[].last_publish_error``              the last send failure's text, or null
``cells[].ray``                             only in a run on a Ray cluster (``--cluster``,
                                            ``mqbench.ray.engine``): ``address``,
                                            ``workers_per_node``, ``placement`` (``topic``: a
                                            topic's producers and consumers on one node, or
                                            ``spread``), ``topic_cells[]`` (``topics``,
                                            ``rate_share``, ``producers``, ``consumers``,
                                            ``node_ids``; empty under spread),
                                            ``e2e_clock_uncertainty_us`` (bound on the clock error
                                            of an e2e latency: 0 when each topic's producers and
                                            consumers share a node, else the worst cross-node
                                            pair's summed uncertainties; null without producers)
                                            and ``nodes[]``: ``node_id``, ``name``
                                            (hostname/ip), ``producers``, ``consumers``,
                                            ``layout_hosts`` placed there, ``clock_offset_ns`` (node
                                            monotonic clock minus the driver's; workers run on the
                                            driver's clock through it), ``clock_uncertainty_ns`` (half
                                            the least round trip: a bound), ``clock_rtt_ns_min``,
                                            ``clock_samples``; on every node (workers or layout
                                            hosts) over the measured phase:
                                            ``node_cpu_busy_share`` (all the node's CPUs),
                                            ``worker_cpu_s`` (its workers; null without), ``net_bytes_sent_per_s``,
                                            ``net_bytes_recv_per_s`` (every interface of the node).
                                            On a Ray layout the stores are on the nodes' disks: the
                                            stored figures below are null
``cells[].windows[].broker_cpu_s``          CPU seconds of the brokers / of the load generator in
``cells[].windows[].client_cpu_s``          that window (sampled at its edges; broker null on a target)
``cells[].batch_achieved``                  messages per record as the brokers STORED them (read from
                                            the stores after the cell, one replica per group, on the
                                            topics the cell batches, else on all workload topics):
                                            ``records_total``, ``msgs_total``,
                                            ``msgs_per_record_mean``, ``msgs_per_record_p50``,
                                            ``msgs_per_record_p99``, ``asked_msgs`` (the batch asked
                                            for) and ``under_half_asked`` (mean < asked / 2); null
                                            on a target (``mqbench.run.stored``)
``cells[].disk_user_bytes_per_msg``         log bytes of user records (every record but the
                                            broker's metadata topic, entry framing included) less
                                            mqbench's timing stamps in them, all replicas, per
                                            acknowledged message; null on a target
``cells[].disk_stamp_bytes_total``          what mqbench's timing stamps (``mqbRun``,
                                            ``mqbIntendedNs``, ``mqbDeliverNs``) took in those records,
                                            all replicas (``mqbench.run.stored``)
``cells[].disk_meta_bytes_total``           log bytes of the broker's metadata records (offset
                                            snapshots, topic configs), all replicas
``cells[].disk_batched_bytes_per_msg``      the part of the user bytes on the topics the cell batches,
                                            all replicas, per message stored there (what batching and
                                            whole-batch compression achieve; delayed messages always
                                            go alone); null when the cell batches nothing
``cells[].disk_stored_classes``             the messages the stores hold by class (``plain_msgs``: on
                                            their topic as sent; ``parked_msgs``: delayed, on the
                                            delay topics; ``delivered_msgs``: a delayed message's
                                            copy re-put when due), counted once per group, and
                                            their ``*_bytes`` over all replicas; null on a target
``cells[].disk_predicted``                  what ``mqbench codecs bench --workload P --batch N``
                                            predicts for the cell (``codecs.footprint``: one copy;
                                            ``batchable_bytes_per_msg``,
                                            ``delayed_parked_bytes_per_msg``,
                                            ``delayed_delivered_bytes_per_msg``,
                                            ``whole_bytes_per_msg`` (steady state),
                                            ``whole_parked_bytes_per_msg``, the sample's counts and
                                            ``command``); null on a target or for a trace
``cells[].broker_cpu_us_per_msg``           broker processes' CPU microseconds per message of the
                                            measured phase (equals ``cpu_s_per_million_msgs``)
``cells[].client_cpu_us_per_msg``           the load generator's (driver workers + mqbench parent)
``cells[].broker_cpu_machine_share``        share of the machine (all cores) each side used over
``cells[].client_cpu_machine_share``        the measured phase; 1.0 = every core busy. With the
                                            brokers on Ray nodes the broker share divides by the
                                            summed CPU count of the nodes that host them (not
                                            the driver's); with workers on Ray nodes the client
                                            share divides by this machine's CPUs plus theirs
``cells[].producer_cpu_us_per_msg``         the client figure split by role: the producer worker
``cells[].consumer_cpu_us_per_msg``         processes' and the consumer worker processes' CPU µs
                                            per acknowledged message (the rest of the client
                                            figure is the mqbench parent), as each worker reports
                                            its own process CPU: on Ray too; null when a worker
                                            of the role never reported
``cells[].consumer_cpu_us_per_delivery``    the consumer workers' CPU µs per delivery (every
                                            group's: orders has three per message)
==========================================  ========================================================
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from mqbench import __version__
from mqbench.errors import CorruptDataError, UserError
# the schema's names live with its check (result_schema); re-exported here for this module's callers
from mqbench.harness.result_schema import READABLE_SCHEMAS, RESULT_FILE, RESULT_SCHEMA, validate_result  # noqa: F401
from mqbench.harness.metrics import RunMetrics
from mqbench.harness.verdict import DEFAULT_BOUNDS, Bounds, judge_fixed, judge_search

TIMESERIES_FILE = "timeseries.parquet"
TABLE_FILE = "table.md"

# --- building ----------------------------------------------------------------------------------------


def git_info(directory: str | os.PathLike = ".") -> dict:
    """``{"commit": full hash or None, "dirty": bool or None}`` of the checkout holding ``directory``."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory,
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(status.strip())}


def layout_summary(layout) -> dict:
    """The ``layout`` field from a ``mqbench.broker.layout.Layout``."""
    hosts = len(layout.hosts)
    instances = len(layout.instances) if layout.instances else sum(len(r) for r in layout.groups.values())
    replicas = max((len(r) for r in layout.groups.values()), default=1)
    return {"name": layout.name, "hosts": hosts, "groups": len(layout.groups), "replicas_per_group": replicas,
            "instances": instances, "instances_per_host": instances / hosts if hosts else 0.0}


def workload_info(*, profile: str | None = None, trace_file: str | os.PathLike | None = None,
                  description: str = "") -> dict:
    """The ``workload`` field: a profile name, or a trace file with the SHA-256 of its bytes."""
    if (profile is None) == (trace_file is None):
        raise UserError("a workload is either a profile or a trace file, exactly one of them")
    digest = None
    if trace_file is not None:
        hasher = hashlib.sha256()
        try:
            with open(trace_file, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    hasher.update(chunk)
        except FileNotFoundError:
            raise UserError(f"trace file {trace_file} does not exist") from None
        digest = hasher.hexdigest()
    return {"profile": profile, "trace_file": None if trace_file is None else str(trace_file),
            "trace_sha256": digest, "description": description}


def build_cell(name: str, settings: dict, metrics: RunMetrics, *, disk_bytes_per_msg: float | None = None,
               replication_bytes: int | None = None, cpu_seconds: float | None = None,
               max_rate_search: dict | None = None, offered_msgs_per_s: float | None = None,
               extra_aggregates: dict | None = None, window_extras: list[dict] | None = None,
               bounds: Bounds = DEFAULT_BOUNDS) -> dict:
    """One ``cells[]`` entry from a cell's merged metrics and its side measurements, judged
    (``harness.verdict``) once everything is in: ``extra_aggregates`` join the aggregates and
    ``window_extras[k]`` joins window ``k`` before the verdict is drawn."""
    aggregates = metrics.aggregates()
    published = aggregates["published"]
    aggregates["sustainable_rate_per_s"] = None if max_rate_search is None else max_rate_search.get("sustainable_rate_per_s")
    aggregates.update(extra_aggregates or {})
    windows = metrics.window_series()
    for window, extra in zip(windows, window_extras or []):
        window.update(extra)
    cell = {
        "name": name, "settings": dict(settings), "aggregates": aggregates,
        "histograms": metrics.encoded_histograms(), "windows": windows,
        "disk_bytes_per_msg": disk_bytes_per_msg, "replication_bytes": replication_bytes,
        "cpu_s_per_million_msgs": (cpu_seconds / published * 1e6) if cpu_seconds is not None and published else None,
        "max_rate_search": max_rate_search,
    }
    if max_rate_search is not None:
        verdict = judge_search(max_rate_search)
    else:
        verdict = judge_fixed(aggregates, windows, offered_msgs_per_s, bounds)
    cell.update(verdict.fields())
    return cell


def build_result(*, cells: list[dict], seed: int, command_line: list[str], machine: dict, limits: dict | None,
                 layout: dict, workload: dict, codec: dict, batch: dict, payload_source: dict, warmup_ms: int,
                 duration_ms: int, window_ms: int, git: dict | None = None, created_utc: datetime | None = None,
                 native: dict | None = None) -> dict:
    """The ``result.json`` document (validated before it is returned); ``native`` defaults to this
    process's ``mqbench.native.report()``."""
    from mqbench import native as native_modules

    created = (created_utc or datetime.now(timezone.utc)).astimezone(timezone.utc)
    doc = {
        "schema": RESULT_SCHEMA, "tool_version": __version__, "created_utc": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": git if git is not None else git_info(Path(__file__).parent), "seed": seed,
        "command_line": list(command_line), "machine": dict(machine),
        "native": dict(native_modules.report() if native is None else native), "limits": limits, "layout": dict(layout),
        "workload": dict(workload), "codec": dict(codec), "batch": dict(batch), "payload_source": dict(payload_source),
        "warmup_ms": warmup_ms, "duration_ms": duration_ms, "window_ms": window_ms, "cells": list(cells),
    }
    validate_result(doc, "result")
    return doc


def folder_name(doc: dict) -> str:
    """``<UTC>-<profile>-<short hash>`` for a result document."""
    stamp = doc["created_utc"].replace("-", "").replace(":", "")
    workload = doc["workload"]
    label = workload.get("profile") or Path(workload.get("trace_file") or "run").stem
    label = re.sub(r"[^A-Za-z0-9_.]+", "_", label).strip("._") or "run"
    commit = (doc["git"] or {}).get("commit")
    return f"{stamp}-{label}-{commit[:7] if commit else 'nogit'}"


# --- writing -----------------------------------------------------------------------------------------


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _timeseries_table(doc: dict):
    import pyarrow as pa

    rows = []
    for cell in doc["cells"]:
        for window in cell["windows"]:
            rows.append({"cell": cell["name"], **window})
    if not rows:
        return pa.table({"cell": pa.array([], pa.string())})
    columns = list(dict.fromkeys(key for row in rows for key in row))
    arrays = {}
    for column in columns:
        values = [row.get(column) for row in rows]
        if column == "cell":
            arrays[column] = pa.array(values, pa.string())
        elif all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values):
            arrays[column] = pa.array(values, pa.int64())
        else:
            arrays[column] = pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.table(arrays)


def write_result(doc: dict, results_dir: str | os.PathLike, *, table_md: str | None = None) -> Path:
    """Write the result folder under ``results_dir`` atomically; returns the folder's path.

    ``table_md`` defaults to the ``mqbench report`` markdown table of this result.
    """
    import pyarrow.parquet as pq

    validate_result(doc, "result")
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    base = folder_name(doc)
    final = results_dir / base
    suffix = 2
    while final.exists():
        final = results_dir / f"{base}-{suffix}"
        suffix += 1
    temporary = results_dir / f".{final.name}.tmp-{os.getpid()}"
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir()
    try:
        _write_file(temporary / RESULT_FILE, (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode("utf-8"))
        pq.write_table(_timeseries_table(doc), temporary / TIMESERIES_FILE)
        if table_md is None:
            from mqbench.harness.report import LoadedResult, render

            table_md = render([LoadedResult(final, doc)], "markdown")
        _write_file(temporary / TABLE_FILE, table_md.encode("utf-8"))
        os.rename(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    directory_fd = os.open(results_dir, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
    return final


# --- loading ---------------------------------------------------------------------------------------

def expand_result_paths(paths) -> list[Path]:
    """Result folders or files as given; a folder holding result folders (``results/``) stands for
    all of them, oldest first (their names start with the UTC time)."""
    expanded: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir() and not (path / RESULT_FILE).exists():
            children = sorted(child for child in path.iterdir()
                              if child.is_dir() and not child.name.startswith(".") and (child / RESULT_FILE).exists())
            if not children:
                raise UserError(f"{path} is not a result folder: it has no {RESULT_FILE} and no result folders")
            expanded.extend(children)
        else:
            expanded.append(path)
    return expanded


def _schema_of(path: Path) -> str | None:
    file = path / RESULT_FILE if path.is_dir() else path
    try:
        with open(file, "rb") as handle:
            head = handle.read(200).decode("utf-8", errors="replace")
    except OSError:
        return None
    match = re.search(r'"schema"\s*:\s*"([^"]+)"', head)
    return match.group(1) if match else None


def split_run_results(paths: list[Path]) -> tuple[list[Path], list[Path], list[str]]:
    """(``mqbench run`` results, ``mqbench dr`` results, one note per other mqbench result
    skipped). ``mqbench dr`` writes its results into the same folders (``mqbench.dr-result/N``): a
    report of ``results/`` renders them in a DR table of their own (``harness.report``)."""
    kept, drills, notes = [], [], []
    for path in paths:
        schema = _schema_of(path)
        if schema is not None and schema.startswith("mqbench.dr-result/"):
            drills.append(path)
            continue
        if schema is not None and schema.startswith("mqbench.") and not schema.startswith("mqbench.result/"):
            folder = path if path.is_dir() else path.parent
            notes.append(f"skipped {folder.name}: a {schema} result (not a `mqbench run` or `mqbench dr` result); "
                         f"its own table is {folder / TABLE_FILE}")
            continue
        kept.append(path)
    return kept, drills, notes


def load_dr_result(path: Path) -> tuple[Path, dict]:
    """(result folder, document) of a ``mqbench dr`` result (``mqbench.dr.report.check_document``)."""
    from mqbench.dr.report import check_document

    file = path / RESULT_FILE if path.is_dir() else path
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{file}: cannot read the DR result: {exc}") from None
    return (path if path.is_dir() else path.parent), check_document(doc, str(file))


def load_result(path: str | os.PathLike) -> tuple[Path, dict]:
    """(result folder, validated document) from a result folder or its ``result.json``.

    Anything else (missing file, not JSON, another schema or version, missing or mistyped fields,
    undecodable histograms) raises UserError/CorruptDataError naming the file and the problem.
    """
    path = Path(path)
    file = path / RESULT_FILE if path.is_dir() else path
    if not file.exists():
        if path.is_dir():
            raise UserError(f"{path} is not a result folder: it has no {RESULT_FILE}")
        raise UserError(f"no such result: {path}")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptDataError(f"not UTF-8 text ({exc.reason})", where=str(file), offset=exc.start) from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptDataError(f"not JSON: {exc.msg} (line {exc.lineno} column {exc.colno})", where=str(file),
                               offset=exc.pos) from exc
    validate_result(doc, str(file))
    return file.parent, doc
