"""A host that a playbook could not reach at all is NodeUnreachable (exit 4, the hosts named), not a
plain StepFailed: a run that meets it marks its dataset incomplete (grayctl.run.flow)."""

from __future__ import annotations

import pytest

from grayctl.errors import FaultNoEffect, NodeUnreachable, StepFailed
from grayctl.run.ansible import HostFailure, PlaybookResult, raise_for


def _result(*failures: HostFailure) -> PlaybookResult:
    return PlaybookResult("fault.yml", "failed", 2, failures=list(failures))


def test_an_unreachable_host_is_node_unreachable_naming_it_and_the_lost_path() -> None:
    with pytest.raises(NodeUnreachable) as err:
        raise_for(_result(HostFailure("node02", "Revert the fault", "Failed to connect to the host via ssh",
                                      unreachable=True)))
    assert err.value.exit_code == 4 and err.value.hosts == ["node02"]
    assert err.value.message.startswith("lost the management path to node02: fault.yml could not reach it over SSH")
    assert "node02: unreachable in task 'Revert the fault'" in err.value.message
    assert "management link" in (err.value.hint or "")


def test_a_failure_on_a_reached_host_stays_a_step_failure() -> None:
    with pytest.raises(StepFailed) as err:
        raise_for(_result(HostFailure("node01", "Apply", "rc 1")))
    assert not isinstance(err.value, NodeUnreachable)


def test_unreachable_beside_a_failure_still_names_the_lost_host() -> None:
    with pytest.raises(NodeUnreachable) as err:
        raise_for(_result(HostFailure("node01", "Apply", "rc 1"),
                          HostFailure("node03", "Apply", "timed out", unreachable=True),
                          HostFailure("node02", "Apply", "no route", unreachable=True)))
    assert err.value.hosts == ["node02", "node03"] and "lost the management path to node02, node03" in err.value.message


def test_no_effect_wins_over_unreachable() -> None:
    with pytest.raises(FaultNoEffect):
        raise_for(_result(HostFailure("node01", "Apply", "x shows no effect within 2 s"),
                          HostFailure("node02", "Apply", "timed out", unreachable=True)))


def test_a_successful_playbook_raises_nothing() -> None:
    raise_for(PlaybookResult("fault.yml", "successful", 0))
