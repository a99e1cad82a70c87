"""``mqbench.profiling``: off unless MQBENCH_PROFILE is set; on, a pstats file per process with the
loop thread's call counts, snapshots while running, and a report with counts per anchor call."""
import asyncio
import pstats

from mqbench import profiling


def _work(n: int) -> int:
    return sum(range(n))


def test_off_when_unset_and_for_clients_unless_asked(monkeypatch, tmp_path):
    monkeypatch.delenv(profiling.ENV, raising=False)
    assert profiling.start("broker-a/n0") is None
    monkeypatch.setenv(profiling.ENV, str(tmp_path / "prof"))
    monkeypatch.delenv(profiling.CLIENTS_ENV, raising=False)
    assert profiling.start("producer", client=True) is None      # the load generator: opt-in
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv(profiling.CLIENTS_ENV, "1")
    profile = profiling.start("producer", client=True)
    assert profile is not None
    profile.stop()
    assert [p.name.split("-")[0] for p in (tmp_path / "prof").iterdir()] == ["producer"]


def test_counts_calls_and_reports_them_per_anchor(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(profiling.ENV, str(tmp_path / "prof"))
    monkeypatch.setattr(profiling, "SNAPSHOT_S", 0.01)

    async def main() -> str:
        profile = profiling.start("broker-a/n0", asyncio.get_running_loop())
        assert profile is not None
        for _ in range(6):
            _work(10)
            await asyncio.sleep(0.02)            # snapshots are written meanwhile
        snapshot = pstats.Stats(profile.path).stats  # type: ignore[attr-defined]
        assert any(k[2] == "_work" for k in snapshot)
        for _ in range(6):
            _work(10)
        profile.stop()
        profile.stop()                          # idempotent
        return profile.path

    path = asyncio.run(main())
    assert "/" not in path.rsplit("prof/", 1)[1]            # the instance name's slash is not a folder
    calls = {k[2]: v[1] for k, v in pstats.Stats(path).stats.items()}  # type: ignore[attr-defined]
    assert calls["_work"] == 12                  # the counts survive the snapshots
    assert profiling.main([str(tmp_path / "prof"), "--per", "_work", "--top", "50"]) == 0
    out = capsys.readouterr().out
    assert "per call of _work: 12 calls" in out
    work_line = next(line for line in out.splitlines() if line.endswith("(_work)"))
    assert work_line.split()[2:4] == ["12", "1.00"]           # calls, and calls per _work call


def test_report_refuses_an_empty_folder(tmp_path, capsys):
    assert profiling.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("mqbench: error: no .pstats files")


def test_the_timer_is_cpu_by_default_wall_when_asked_and_cpu_for_a_typo(monkeypatch, capsys):
    """The default clock is the thread's CPU time; ``wall`` is cProfile's own clock (about 5x
    cheaper per event: a CPU-clock profile overloads a broker at moderate rates, module doc); a
    value that is neither is named on stderr and the default is kept."""
    monkeypatch.delenv(profiling.TIMER_ENV, raising=False)
    assert profiling.timer() == "cpu"
    monkeypatch.setenv(profiling.TIMER_ENV, " Wall ")
    assert profiling.timer() == "wall"
    monkeypatch.setenv(profiling.TIMER_ENV, "walltime")
    assert profiling.timer() == "cpu"
    assert "MQBENCH_PROFILE_TIMER='walltime' is not one of cpu, wall" in capsys.readouterr().err


def test_a_wall_profile_counts_the_same_calls(monkeypatch, tmp_path):
    monkeypatch.setenv(profiling.ENV, str(tmp_path / "prof"))
    monkeypatch.setenv(profiling.TIMER_ENV, "wall")
    profile = profiling.start("broker-a/n1")
    assert profile is not None
    for _ in range(7):
        _work(10)
    profile.stop()
    stats = pstats.Stats(profile.path).stats  # type: ignore[attr-defined]
    assert {k[2]: v[1] for k, v in stats.items()}["_work"] == 7
