"""The JAX peer computes the same hypergradients as exactrev on the same problem."""

import pytest

pytest.importorskip("jax")

from exactrev.faces.bench_training import PaperProblem  # noqa: E402
from exactrev.faces.peers_jax import MODES, jax_hypergradient, max_relative_difference  # noqa: E402


@pytest.fixture(scope="module")
def problem_and_ours():
    prob = PaperProblem(steps=6, hidden=(7, 5), batch=20)
    return prob, prob.hypergradient()


@pytest.mark.parametrize("mode", MODES)
def test_jax_peer_agrees_with_exact_reversal(problem_and_ours, mode):
    prob, ours = problem_and_ours
    seconds, loss, grads, _ = jax_hypergradient(prob, mode)
    assert seconds > 0
    assert loss == pytest.approx(ours.loss, rel=1e-9)
    assert grads["lr"].shape == ours.grads["lr"].shape
    assert max_relative_difference(ours.grads, grads) < 1e-6


def test_jax_peer_refuses_an_unknown_mode(problem_and_ours):
    with pytest.raises(ValueError, match="mode must be one of"):
        jax_hypergradient(problem_and_ours[0], "unrolled")


def test_the_peers_report_times_every_mode_and_skips_what_would_not_fit():
    from exactrev.faces.bench_peers import peers_report

    lines = []
    rows = peers_report(steps=(4, 8), hidden=(5,), out=lines.append, memory_limit=1)
    ran = [r for r in rows if r["ran"]]
    assert [r["method"] for r in rows[:4]] == ["exactrev reversal", "JAX store", "JAX checkpoint", "JAX segments"]
    assert all(r["agreement"] < 1e-6 for r in ran if r["agreement"] is not None)
    skipped = [r for r in rows if not r["ran"]]
    assert skipped and all(r["T"] == 8 for r in skipped)   # extrapolated from T = 4 past a 1-byte limit
    assert any("extrapolated" in line for line in lines)


def test_a_peer_time_is_the_fastest_of_its_runs_after_an_untimed_first_one():
    from exactrev.faces import bench_peers

    calls = []

    def run():
        calls.append(1)
        return len(calls)

    seconds, last = bench_peers._fastest(run, 3)
    assert (len(calls), last) == (4, 4) and 0 <= seconds < 1
    calls.clear()
    assert bench_peers._fastest(run, 1, warm=False)[1] == 1 and len(calls) == 1
