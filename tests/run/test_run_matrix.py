"""Matrix cells: the cartesian product in the order written, every bad spec named."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.errors import UserError
from mqbench.run.matrix import CellSettings, check_value, parse_matrix


def test_no_matrix_is_the_base_cell():
    base = CellSettings(codec="lz4", batch="8", delay="off")
    assert parse_matrix(None, base) == [base]
    assert parse_matrix("  ", base) == [base]


def test_the_issue_example_is_a_product_with_the_first_axis_slowest():
    cells = parse_matrix("codec=none,zstd:3;batch=1,64;delay=off,on", CellSettings())
    assert [c.name for c in cells] == [
        "codec=none,batch=1,delay=off", "codec=none,batch=1,delay=on",
        "codec=none,batch=64,delay=off", "codec=none,batch=64,delay=on",
        "codec=zstd:3,batch=1,delay=off", "codec=zstd:3,batch=1,delay=on",
        "codec=zstd:3,batch=64,delay=off", "codec=zstd:3,batch=64,delay=on",
    ]


def test_axes_the_matrix_does_not_name_keep_the_flags_values():
    cells = parse_matrix("batch=1,16", CellSettings(codec="lz4", delay="off"))
    assert [(c.codec.spec, c.batch, c.delay) for c in cells] == [("lz4:0", "1", "off"), ("lz4:0", "16", "off")]


def test_values_are_canonical():
    assert check_value("batch", " 064 ") == "64"
    assert check_value("codec", "zstd") == parse_matrix("codec=zstd", CellSettings())[0].codec
    assert parse_matrix("codec=zstd", CellSettings())[0].codec.spec == "zstd:3"


def test_the_codec_is_parsed_once_and_travels_as_an_object(monkeypatch):
    """--codec is parsed where the cell is made; the cell, the matrix product and a worker's
    pickled copy hand on the Codec itself (nothing downstream parses its text again)."""
    import pickle

    from mqbench.codecs import registry
    from mqbench.run import matrix
    cells = parse_matrix("codec=none,zstd:3;batch=1,64", CellSettings(codec="lz4"))
    calls = []
    monkeypatch.setattr(registry, "parse_codec", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(matrix, "parse_codec", lambda *a, **k: calls.append(a))
    copies = [pickle.loads(pickle.dumps({"codec": c.codec}))["codec"] for c in cells]
    assert [c.spec for c in copies] == ["none", "none", "zstd:3", "zstd:3"]
    assert copies[2].decompress(copies[2].compress(b"x" * 100)) == b"x" * 100
    assert [c.name for c in cells][2] == "codec=zstd:3,batch=1,delay=on" and calls == []
    assert CellSettings(batch="profile").batch_msgs_for(64) == 64
    assert CellSettings(batch="1").batch_msgs_for(64) == 1


@pytest.mark.parametrize("spec, message", [
    ("speed=1", "unknown matrix axis 'speed'"),
    ("codec", "must look like axis=value1,value2"),
    ("codec=", "has no values"),
    ("codec=lz4;codec=none", "given twice"),
    ("batch=1,1", "repeats a value"),
    ("batch=0", "batch '0' must be"),
    ("batch=2000", "batch '2000' must be"),
    ("batch=x", "batch 'x' must be"),
    ("delay=maybe", "delay 'maybe' must be 'on' or 'off'"),
    ("batch_compression=yes", "batch_compression 'yes' must be"),
    ("codec=gzip", "codec 'gzip'"),
    (";;", "names no axis"),
])
def test_bad_specs_are_user_errors_naming_the_problem(spec, message):
    with pytest.raises(UserError, match=message):
        parse_matrix(spec, CellSettings())


@given(st.text(max_size=60))
def test_any_text_parses_or_is_a_user_error(spec):
    try:
        cells = parse_matrix(spec, CellSettings())
    except UserError:
        return
    assert cells and all(isinstance(c, CellSettings) for c in cells)
    assert len({c.name for c in cells}) == len(cells)


def test_batch_compression_is_an_axis_named_only_when_on():
    cells = parse_matrix("batch_compression=off,on", CellSettings(codec="zstd:3", batch="64"))
    assert [c.name for c in cells] == ["codec=zstd:3,batch=64,delay=on",
                                       "codec=zstd:3,batch=64,delay=on,batch_compression=on"]
    assert cells[1].as_dict()["batch_compression"] == "on"


def test_layout_is_an_axis_and_names_the_cell_only_when_varied():
    cells = parse_matrix("layout=raft3,3x3;batch=1,64", CellSettings())
    assert [c.name for c in cells] == [
        "layout=raft3,codec=none,batch=1,delay=on", "layout=raft3,codec=none,batch=64,delay=on",
        "layout=3x3,codec=none,batch=1,delay=on", "layout=3x3,codec=none,batch=64,delay=on"]
    assert cells[0].as_dict()["layout"] == "raft3"
    assert "layout" not in CellSettings().as_dict() and CellSettings().name.startswith("codec=")
    with pytest.raises(UserError, match="layout 'a=b'"):
        check_value("layout", "a=b")
