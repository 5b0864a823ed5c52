"""``exactrev demo``: train an MLP reversibly on the bundled digits, run it backwards, check every bit."""

import time

import numpy as np

from ..hyper.data import batch_indices, load_digits
from ..model.mlp import MLP
from ..optim.schedule import MomentumSchedule
from ..optim.sgd import ReversibleSGD


def run_demo(steps=100, hidden=(50, 50, 50), batch=200, lr=0.5, momentum=0.9, seed=0,
             progress=True, out=print):
    data = load_digits(seed=seed)
    net = MLP((data.n_features, *hidden, data.n_classes), "tanh")
    rng = np.random.default_rng(seed)
    w0 = net.init_noise(rng) * 0.1
    sched = MomentumSchedule.build(lr=lr, momentum=momentum, steps=steps)
    opt = ReversibleSGD(w0, sched)

    def grad(w, t):
        idx = batch_indices(len(data.train), batch, seed, 0, t)
        return net.loss_grad(w, data.train.X[idx], data.train.y[idx])[1]

    w_start, v_start = opt.w.copy(), opt.v.copy()
    out(f"exactrev demo: {net.n_params} weights ({' -> '.join(map(str, net.sizes))}, tanh), "
        f"{steps} steps of momentum SGD, lr={lr}, momentum={sched.fraction(0, 0)}, batch={batch}")
    loss0 = net.loss(opt.weights, data.valid.X, data.valid.y)
    t0 = time.perf_counter()
    opt.forward(grad, progress=progress)
    t1 = time.perf_counter()
    loss1 = net.loss(opt.weights, data.valid.X, data.valid.y)
    bits = opt.bits_per_weight_step()
    bound = float(sched.bits_per_step().mean())
    out(f"forward:  {t1 - t0:.2f} s, validation loss {loss0:.4f} -> {loss1:.4f}")
    out(f"buffer:   {bits:.5f} bits per weight per step (entropy bound log2(d/n) = {bound:.5f}); "
        f"storing w and v would take 128")
    opt.reverse(grad, progress=progress)
    t2 = time.perf_counter()
    same = np.array_equal(opt.w, w_start) and np.array_equal(opt.v, v_start)
    out(f"reverse:  {t2 - t1:.2f} s, w_0 and v_0 restored bit for bit: {same}; "
        f"buffer back to its initial state: {opt.buffer_restored()}")
    return same
