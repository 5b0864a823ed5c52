"""The data-parallel pieces in one process (SelfComm): the contract of each, and their failure modes.
Several ranks: test_mpi.py."""

import numpy as np
import pytest

import exactrev
from exactrev import MetaParams, StepError
from exactrev.parallel.comm import SelfComm, agree, launched_by_mpiexec
from exactrev.parallel.data_parallel import DataParallelLoss
from exactrev.parallel.sharded import ShardedSGD, slice_counts


def _problem(meta_terms=("log_l2", "train_X")):
    data = exactrev.load_digits(200, 80, seed=4)
    net = exactrev.MLP((64, 9, 10))
    tl = exactrev.MLPTrainingLoss(net, data.train, 30, seed=4, meta=meta_terms, log_l2=np.log(1e-3))
    return net, tl, exactrev.MLPValidationLoss(net, data.valid), net.init_noise(np.random.default_rng(4))


def test_the_data_parallel_hypergradient_agrees_with_the_one_process_reference():
    net, tl, vl, noise = _problem()
    meta = MetaParams.constant(10, net.n_types, lr=0.3)
    par = exactrev.hypergradient(meta, tl, vl, noise, net.weight_types(), comm=SelfComm())
    ref = exactrev.hypergradient(meta, tl, vl, noise, net.weight_types(), method="store")
    assert par.restored and par.stats["ranks"] == 1 and par.stats["allreduce_bytes"]["grad"] > 0
    for name in ("log_lr", "logit_momentum", "log_init_scale", "log_l2", "train_X"):
        scale = np.abs(ref.grads[name]).max()
        assert np.abs(par.grads[name] - ref.grads[name]).max() <= 1e-6 * scale, name


def test_the_loss_gives_the_same_gradient_forward_and_backward_and_close_to_the_plain_one():
    net, tl, vl, noise = _problem()
    loss = DataParallelLoss(tl, SelfComm(), chunk=7)   # 30 rows: chunks of 7, 7, 7, 7 and 2
    w, u = 0.1 * noise, np.random.default_rng(5).normal(size=net.n_params)
    g = loss.grad(w, 3)
    g2, hvp, mixed = loss.grad_and_vjp(w, 3, u)
    np.testing.assert_array_equal(g, g2)
    plain_g, plain_h, plain_mixed = tl.grad_and_vjp(w, 3, u)
    np.testing.assert_allclose(g, plain_g, rtol=0, atol=1e-11)
    np.testing.assert_allclose(hvp, plain_h, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(mixed["train_X"].rows, plain_mixed["train_X"].rows)
    np.testing.assert_allclose(mixed["train_X"].values, plain_mixed["train_X"].values, atol=1e-11)
    assert loss.meta_shapes() == tl.meta_shapes()


def test_bad_arguments_are_refused_by_name():
    net, tl, vl, noise = _problem()
    with pytest.raises(TypeError, match="MLPTrainingLoss"):
        DataParallelLoss(vl, SelfComm())
    with pytest.raises(ValueError, match="chunk"):
        DataParallelLoss(tl, SelfComm(), chunk=0)
    meta = MetaParams.constant(4, net.n_types)
    with pytest.raises(ValueError, match="supports optimizer='sgd', method='reversal'"):
        exactrev.hypergradient(meta, tl, vl, noise, net.weight_types(), method="store", comm=SelfComm())
    with pytest.raises(ValueError, match="cannot be split"):
        ShardedSGD(np.zeros(1), meta.schedule(), _FakeComm(0, 2))


class _FakeComm(SelfComm):
    def __init__(self, rank, size):
        self.rank, self.size = rank, size


def test_agree_re_raises_with_the_rank_and_undoes_nothing_on_the_failing_rank():
    undone = []

    def fails():
        raise StepError("step 4, weight 2: bad")

    with pytest.raises(StepError, match=r"^rank 0 of 1: step 4, weight 2: bad$"):
        agree(SelfComm(), "step 4", fails, undo=undone.append)
    with pytest.raises(KeyboardInterrupt, match="rank 0 of 1, reading"):
        agree(SelfComm(), "reading", lambda: (_ for _ in ()).throw(KeyboardInterrupt("stop")))
    assert undone == [] and agree(SelfComm(), "x", lambda a: a + 1, 1) == 2


def test_a_sharded_run_reverses_to_its_start_and_slices_cover_the_weights():
    assert slice_counts(10, 3) == [4, 3, 3] and sum(slice_counts(8860, 64)) == 8860
    net, tl, vl, noise = _problem(())
    loss = DataParallelLoss(tl, SelfComm())
    meta = MetaParams.constant(8, net.n_types, lr=0.3)
    opt = ShardedSGD(exactrev.initial_weights(meta, noise, net.weight_types()), meta.schedule(), SelfComm(),
                     group=net.weight_types())
    w0 = opt.w.copy()
    opt.forward(loss.grad)
    assert opt.t == 8 and not np.array_equal(opt.w, w0)
    while opt.t > 0:
        opt.unstep_weights()
        opt.unstep_velocity(loss.grad(opt.weights, opt.t - 1))
    opt.verify_restored()
    np.testing.assert_array_equal(opt.w, w0)


def test_mpiexec_is_recognised_from_the_environment():
    assert launched_by_mpiexec({"PMI_SIZE": "2"}) and launched_by_mpiexec({"OMPI_COMM_WORLD_SIZE": "4"})
    assert not launched_by_mpiexec({"PMI_SIZE": "1"}) and not launched_by_mpiexec({})
