"""Data-driven Raft transcripts in ``testdata/*.txt`` (rewrite with ``MQBENCH_REWRITE=1``)."""
from pathlib import Path

import pytest

from raft_scenario import parse_blocks, run_file

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


def test_there_are_transcripts():
    assert len(FILES) >= 6


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_transcript(path):
    expected, actual = run_file(path)
    assert actual == expected


def test_parser_rejects_a_command_without_separator():
    with pytest.raises(ValueError, match="expected ----"):
        parse_blocks("campaign 1\nnot a separator\n")
