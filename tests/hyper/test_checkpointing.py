"""The checkpoint back-end: the package's Revolve schedule, carried out exactly."""

import numpy as np
import pytest
from checkpoint_schedules import Forward, Revolve

from exactrev.hyper.checkpointing import default_snapshots, revolve_forward_steps

from .test_hypergrad import _problem, _run, STEPS


@pytest.mark.parametrize("steps, snapshots", [(10, 3), (15, 2), (40, 5), (100, 10)])
def test_schedule_counts_equal_the_packages_revolve_class(steps, snapshots):
    revolve = sum(len(a) for a in Revolve(steps, snapshots) if isinstance(a, Forward))
    assert revolve_forward_steps(steps, snapshots) == revolve


@pytest.mark.parametrize("snapshots", [1, 2, 4, None, STEPS])
def test_checkpoint_equals_store_bit_for_bit_and_takes_the_scheduled_steps(snapshots):
    args = _problem()
    ref = _run(*args, method="store")
    cp = _run(*args, method="checkpoint", snapshots=snapshots)
    assert cp.loss == ref.loss
    for name in ref.grads:
        np.testing.assert_array_equal(cp.grads[name], ref.grads[name], err_msg=name)
    c = snapshots or default_snapshots(STEPS)
    assert cp.stats["forward_steps"] == revolve_forward_steps(STEPS, min(c, STEPS))
    assert cp.grad_evals == cp.stats["forward_steps"] + STEPS
    assert cp.extra_bytes <= (min(c, STEPS) + 1) * 16 * args[0].n_params


def test_one_snapshot_recomputes_quadratically_many_steps():
    cp = _run(*_problem(), method="checkpoint", snapshots=1)
    assert cp.stats["forward_steps"] == STEPS * (STEPS + 1) // 2


def test_bad_snapshot_count_is_refused():
    with pytest.raises(ValueError, match="snapshots"):
        _run(*_problem(), method="checkpoint", snapshots=-1)
