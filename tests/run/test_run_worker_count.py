"""``--producers auto`` (``run.worker_count``): one producer worker per core to spare."""
import pytest
from click.testing import CliRunner

from mqbench.cli import cli
from mqbench.run.worker_count import PRODUCERS_MAX, default_producers


def test_producers_are_the_cores_left_after_the_brokers_and_the_consumers():
    assert default_producers(8, 3, 1).producers == 4 and default_producers(8, 3, 1).note is None
    assert default_producers(64, 9, 1).producers == PRODUCERS_MAX
    assert default_producers(4, None, 1).producers == 3          # a target: its brokers run elsewhere
    assert default_producers(8, 3, 1, ray=True).producers == 1


@pytest.mark.parametrize("brokers", [1, 3])
def test_with_no_core_to_spare_one_producer_runs_and_the_basis_says_so(brokers):
    # this 2-core machine: single (1 broker) and raft3 (3) leave nothing beside the consumer worker
    count = default_producers(2, brokers, 1)
    assert count.producers == 1 and count.spare_cpus <= 0
    assert "no core to spare" in count.note and "shares the brokers' cores" in count.note
    basis = count.as_dict()
    assert basis["cpus"] == 2 and basis["broker_processes"] == brokers and basis["spare_cpus"] == count.spare_cpus


def test_producers_flag_takes_a_count_or_auto_and_refuses_the_rest(tmp_path):
    for bad in ("0", "17", "many"):
        result = CliRunner().invoke(cli, ["run", "orders", "--producers", bad, "--out", str(tmp_path)])
        assert result.exit_code == 2 and "--producers" in result.output, result.output
