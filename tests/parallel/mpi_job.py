"""Run under mpiexec by tests/parallel/test_mpi.py: ``python mpi_job.py MODE OUT``; rank 0 writes OUT
(an .npz, or a .json of what each rank raised)."""

import json
import sys

import numpy as np

import exactrev
from exactrev.parallel.comm import world
from exactrev.parallel.data_parallel import DataParallelLoss
from exactrev.parallel.sharded import ShardedSGD


def problem():
    data = exactrev.load_digits(300, 100, seed=1)
    net = exactrev.MLP((64, 12, 10))
    tl = exactrev.MLPTrainingLoss(net, data.train, 75, seed=1, meta=("log_l2", "train_X"), log_l2=np.log(1e-3))
    vl = exactrev.MLPValidationLoss(net, data.valid)
    noise = net.init_noise(np.random.default_rng(1))
    meta = exactrev.MetaParams.constant(12, net.n_types, lr=0.3)
    return data, net, tl, vl, noise, meta


def raised(comm, fn):
    """What fn raised on this rank, gathered on rank 0: [(type name, message, state unchanged)]."""
    try:
        fn()
        got = None
    except Exception as exc:
        got = (type(exc).__name__, str(exc))
    return comm.gather(got, root=0)


def main(mode, out):
    comm = world()
    data, net, tl, vl, noise, meta = problem()
    types = net.weight_types()
    if mode == "hypergradient":
        r = exactrev.hypergradient(meta, tl, vl, noise, types, comm=comm)
        if comm.rank == 0:
            np.savez(out, loss=r.loss, w=r.final_weights, restored=r.restored,
                     buffer_bytes=r.stats["buffer_bytes_peak"], **r.grads)
        return
    w0 = exactrev.initial_weights(meta, noise, types)
    loss = DataParallelLoss(tl, comm)
    opt = ShardedSGD(w0, meta.schedule(), comm, group=types)
    report = {}
    if mode == "failures":
        opt.forward(loss.grad, steps=3)
        before = opt.w.copy(), opt.local.v.copy(), opt.t
        bad = len(w0) - 1   # the last weight lives on the last rank

        def nan_on_last(w, t):
            g = loss.grad(w, t)
            g[bad] = np.nan
            return g

        report["nan"] = raised(comm, lambda: opt.step(nan_on_last(opt.weights, opt.t)))
        report["nan_unchanged"] = comm.gather(bool(np.array_equal(opt.w, before[0])
                                                   and np.array_equal(opt.local.v, before[1])
                                                   and opt.t == before[2]), root=0)
        report["huge"] = raised(comm, lambda: opt.step(loss.grad(opt.weights, opt.t) * 1e12))
        bad_X = tl.train.X.copy()
        idx = tl.batch(opt.t)[0]
        bad_X[idx[30], 0] = np.inf   # a row of the batch's second chunk (rows 25-50), rank 1's
        bad_loss = DataParallelLoss(exactrev.MLPTrainingLoss(net, exactrev.Split(bad_X, tl.train.y), 75, seed=1),
                                    comm)
        report["bad_batch"] = raised(comm, lambda: bad_loss.grad(opt.weights, opt.t))
        opt.forward(loss.grad)
        if comm.rank == comm.size - 1:
            opt.local.buffer.heads[-1] ^= 1
        report["mismatch"] = raised(comm, lambda: _reverse(opt, loss.grad))
    elif mode == "save":
        opt.forward(loss.grad)
        opt.save(out + ".run")
        report["w_final"] = opt.weights.tolist() if comm.rank == 0 else None
    elif mode == "load":
        back = ShardedSGD.load(out + ".run", meta.schedule(), comm, group=types, w0=w0)
        _reverse(back, loss.grad)
        report["restored"] = comm.gather(bool(np.array_equal(back.w, opt.w)), root=0)
    elif mode == "load_wrong_ranks":
        report["load"] = raised(comm, lambda: ShardedSGD.load(out + ".run", meta.schedule(), comm, group=types))
    if comm.rank == 0:
        with open(out, "w") as fh:
            json.dump(report, fh)


def _reverse(opt, grad_fn):
    while opt.t > 0:
        opt.unstep_weights()
        opt.unstep_velocity(grad_fn(opt.weights, opt.t - 1))
    opt.verify_restored()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
