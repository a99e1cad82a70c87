"""``migrate --verify`` reads both logs by windows through the scan (``verify``'s default): its
result must be exactly the record-by-record walk's (``scan=None``), with the compiled scanner and
with the Python one, on a healthy migration (every version pair's shape: batches, DLedger, delays,
compressed bodies) and on a damaged target, where the difference or the error still names the file
and the byte offset."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from migrate_golden import build_store
from mqbench.codecs.registry import parse_codec
from mqbench.errors import CorruptDataError
from mqbench.migrate import scan
from mqbench.migrate.plan import Options
from mqbench.migrate.run import migrate
from mqbench.migrate.source import walk_log
from mqbench.migrate.verify import verify

PY_SCAN = SimpleNamespace(hop=scan.hop_py,
                          summarize=lambda buf, *a, relaxed=False: scan.summarize_py(bytes(buf), *a, relaxed=relaxed))


def _three(src: str, dst: str):
    """verify's result (or the error's text) by the three walks, checked equal."""
    out = []
    for scan_module in (None, scan, PY_SCAN):
        try:
            out.append(verify(src, dst, scan=scan_module))
        except CorruptDataError as exc:
            out.append(("raised", str(exc)))
    assert out[0] == out[1] == out[2]
    return out[0]


@pytest.mark.parametrize("src_version,target", [("v5-dledger", "v4"), ("v4", "v5-dledger"), ("v5", "v4-dledger")])
def test_verify_by_windows_equals_the_walk(tmp_path, src_version, target):
    src = build_store(str(tmp_path / "src"), src_version, messages=80)["root"]
    dst = str(tmp_path / "dst")
    codec = parse_codec("zlib") if src_version.startswith("v5") and target.startswith("v4") else None
    migrate(src, dst, Options(target=target, codec=codec))
    result = _three(src, dst)
    assert result["ok"] and result["messages_compared"] > 80
    # a body byte of one DST record changed (its CRC too, so it stays a valid record) and a cut
    items = [i for i in walk_log(dst) if i.record is not None]
    victim, cut = items[len(items) // 2], items[-2]
    path = os.path.join(dst, victim.where)
    with open(path, "r+b") as f:
        f.seek(victim.offset + 8)
        f.write(b"\x00\x00\x00\x00")                   # BODYCRC: the record no longer passes
    got = _three(src, dst)
    # named by file and offset: the record's, or its DLedger entry's (whose bodyCrc fails first)
    assert isinstance(got, tuple) and got[1].startswith(f"{victim.where} at offset ")
    assert int(got[1].split(" at offset ")[1].split(":")[0]) in (victim.offset, victim.offset - 48)
    with open(path, "r+b") as f:                        # restore; cut the last records instead
        f.seek(victim.offset + 8)
        f.write(victim.record[8:12])
    with open(os.path.join(dst, cut.where), "r+b") as f:
        f.seek(cut.offset)
        f.write(bytes(len(cut.record) * 2))
    got = _three(src, dst)
    if isinstance(got, tuple):                          # the cut entry's framing refused: file named
        assert got[1].startswith(f"{cut.where} at offset ")
    else:
        assert not got["ok"] and "missing in DST" in got["first_difference"]
