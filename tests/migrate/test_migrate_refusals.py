"""What ``migrate`` refuses and how it leaves DST: a corrupt source (DST removed, so the rerun is
not told to --resume), a running broker's store (lock held) unless --force, a killed broker's
store (abort, lock free: accepted with a note), Ctrl-C (the --resume command printed), and the
progress total (data bytes, not preallocated file bytes)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from migrate_golden import storebuilder
from mqbench.cli import cli as cli_main
from mqbench.errors import CorruptDataError
from mqbench.migrate.plan import Options
from mqbench.migrate.run import migrate
from mqbench.migrate.source import data_bytes
from mqbench.migrate.verify import verify

HERE = os.path.dirname(os.path.abspath(__file__))


def _store(tmp_path, n=40, name="src"):
    b = storebuilder()(str(tmp_path / name), version="v4", log_file_bytes=8192)
    for i in range(n):
        b.add("T", b"b" * 300, queue_id=i % 2, properties={"KEYS": f"k{i}"})
    b.save()
    return b


def test_a_refused_migration_removes_what_it_wrote(tmp_path):
    b = _store(tmp_path)
    seg = os.path.join(b.root, "commitlog", f"{8192:020d}")       # damage in the second file
    data = bytearray(open(seg, "rb").read())
    data[200] ^= 0xFF
    open(seg, "wb").write(data)
    out = tmp_path / "out"
    with pytest.raises(CorruptDataError):
        migrate(b.root, str(out), Options(target="v5"), )
    assert not out.exists()
    res = CliRunner().invoke(cli_main, ["migrate", b.root, "--to", "v5", "--out", str(out)])
    assert res.exit_code == 2 and "--resume" not in res.output and "CRC" in res.output
    assert not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(cli_main, ["migrate", b.root, "--to", "v5", "--out", str(empty)])
    assert res.exit_code == 2 and empty.is_dir() and not os.listdir(empty)


_HOLD = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    if sys.argv[2] == "flock":
        fcntl.flock(fd, fcntl.LOCK_EX)
    else:
        fcntl.lockf(fd, fcntl.LOCK_EX)     # a POSIX record lock, as Java's FileChannel.tryLock takes
    print("held", flush=True)
    time.sleep(60)
""")


@pytest.mark.realproc
@pytest.mark.parametrize("kind", ["flock", "posix"])
def test_a_running_brokers_store_is_refused_unless_forced(tmp_path, kind):
    b = _store(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, os.path.join(b.root, "lock"), kind],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        res = CliRunner().invoke(cli_main, ["migrate", b.root, "--to", "v5", "--out", str(tmp_path / "out")])
        assert res.exit_code == 2 and "running broker" in res.output and "--force" in res.output
        assert not (tmp_path / "out").exists()
        res = CliRunner().invoke(cli_main, ["migrate", b.root, "--to", "v5", "--out", str(tmp_path / "out"),
                                            "--force"])
        assert res.exit_code == 0, res.output
        assert "lock is held" in res.output
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_brokers_store_is_accepted_with_a_note(tmp_path):
    b = _store(tmp_path)
    open(os.path.join(b.root, "lock"), "wb").close()
    open(os.path.join(b.root, "abort"), "wb").close()
    res = CliRunner().invoke(cli_main, ["migrate", b.root, "--to", "v5", "--out", str(tmp_path / "out"), "--verify"])
    assert res.exit_code == 0, res.output
    assert "abort file present" in res.output and "verify: OK" in res.output


@pytest.mark.realproc
def test_ctrl_c_prints_the_resume_command(tmp_path):
    b = _store(tmp_path, n=200)
    out = str(tmp_path / "out")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "migrate_interrupt.py"), "3", b.root, "--to",
                           "v5-dledger", "--out", out], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and "Aborted!" not in proc.stderr
    line = next(x.strip() for x in proc.stderr.splitlines() if x.strip().startswith("mqbench migrate"))
    assert line.endswith("--resume") and f"--out {out}" in line
    res = CliRunner().invoke(cli_main, line.split()[1:])
    assert res.exit_code == 0, res.output
    assert verify(b.root, out)["ok"]


def test_progress_counts_data_bytes(tmp_path):
    b = _store(tmp_path, n=10)          # one 8 KiB file, about 3.5 KiB of data
    size = os.path.getsize(os.path.join(b.root, "commitlog", "0" * 20))
    assert data_bytes(b.root) == b.write_pos < size


def test_a_killed_brokers_torn_tail_is_cut_as_recovery_would(tmp_path):
    """A broker killed mid-write leaves a torn last record: with ``abort`` present (and the lock
    free) the log is taken up to its last valid record, and the note says where it was cut; the
    same bytes without ``abort`` are damage and refused."""
    b = _store(tmp_path, n=12)
    seg = os.path.join(b.root, "commitlog", "0" * 20)
    data = bytearray(open(seg, "rb").read())
    last = b.written[-1]
    data[last.physical_offset + last.size - 5:last.physical_offset + last.size] = bytes(5)   # its tail lost
    open(seg, "wb").write(data)
    res = CliRunner().invoke(cli_main, ["migrate", b.root, "--to", "v5", "--out", str(tmp_path / "refused")])
    assert res.exit_code == 2 and "torn or corrupt" in res.output
    open(os.path.join(b.root, "abort"), "wb").close()
    out = str(tmp_path / "out")
    res = CliRunner().invoke(cli_main, ["migrate", b.root, "--to", "v5", "--out", out, "--verify"])
    assert res.exit_code == 0, res.output
    assert f"offset {last.physical_offset} is left out" in res.output and "verify: OK: 11 messages" in res.output
