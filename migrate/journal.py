"""The migration journal: ``{DST}/mqbench-migrate.json``, the progress a ``--resume`` continues from.

One JSON document, replaced atomically (temp file, fsync, rename, fsync of the folder) at every
checkpoint, after the target files it describes were fdatasynced. So after a crash at any moment
the journal names a state the target files reach, and the rest of the target is cut back to it
(``target.TargetLog.rewind``, ``TargetQueues.rewind``).

Fields (schema ``mqbench.migrate-journal/1``)::

    schema            "mqbench.migrate-journal/1"
    source            absolute path of SRC
    source_version    the detected source version
    source_files      [[relative path, size], ...] of SRC's log files: a resume refuses a changed source
    target_version    v4 | v5 | v4-dledger | v5-dledger
    options           {"codec": spec or null, "compress_over_bytes": n, "segment_bytes": n,
                       "map_timers_to_levels": bool, "self_id": "n0"}
    step              the step reached: copy | meta | done  (see ``run.STEPS``)
    progress          {"folder": n, "address": n}: the source position to resume the copy from;
                      "log_end", "last_index": where the target log stood; counters (records,
                      messages, bytes); "prepared": {old physical offset: new} of transaction
                      half records (commit/rollback records point at them)
    queues            [[kind, topic, queue id, size], ...] at the checkpoint

Nothing in it depends on the wall clock or on how often the run was interrupted, so the final
journal is the same bytes for a resumed run as for an uninterrupted one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from mqbench.broker.store.atomic import write_atomic
from mqbench.errors import CorruptDataError

JOURNAL_FILE = "mqbench-migrate.json"
SCHEMA = "mqbench.migrate-journal/1"


def journal_path(dst: str | os.PathLike) -> Path:
    return Path(dst) / JOURNAL_FILE


def write_file_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` durably, without a ``.bak``, so that a rerun leaves exactly the
    files an uninterrupted run leaves."""
    write_atomic(path, data, keep_backup=False)


def write_journal(dst: str | os.PathLike, doc: dict) -> None:
    doc = {"schema": SCHEMA, **{k: v for k, v in doc.items() if k != "schema"}}
    write_file_atomic(journal_path(dst), (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def read_journal(dst: str | os.PathLike) -> dict | None:
    """The journal in ``dst``, None when there is none; CorruptDataError when it does not parse."""
    path = journal_path(dst)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise CorruptDataError("the migration journal is not JSON", where=str(path)) from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise CorruptDataError(f"not a {SCHEMA} journal", where=str(path))
    for key, kind in (("step", str), ("progress", dict), ("queues", list), ("options", dict),
                      ("source_files", list), ("target_version", str), ("source", str)):
        if not isinstance(doc.get(key), kind):
            raise CorruptDataError(f"journal field {key!r} is missing or not a {kind.__name__}", where=str(path))
    return doc
