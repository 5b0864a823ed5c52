"""The hypergradient sweep with everything on the GPU: ``hypergradient(..., device="cuda")``.

The same equations as ``hypergrad.py`` (read that docstring). The forward run and the reverse sweep
keep the weights, the velocity, the buffer, the adjoints and the mini-batches on the device: the
batches of all T steps are uploaded once, and per-type sums use a fixed-order block reduction. The
host reads the results once, at the end. The MLP training loss with a per-weight L2 penalty and the
training inputs as meta-parameters is built in (``MLPTrainingLoss``'s meta-parameters).
"""

import time

import numpy as np
from numba import cuda

from ..exact.fixedpoint import FixedFormat
from ..kernels import cuda as K
from ..model.mlp_cuda import CudaMLP, _grid2, T2
from ..optim.sgd_cuda import THREADS, CudaReversibleSGD, blocks
from .data import batch_indices
from .hypergrad import HypergradResult, MetaParams, initial_weights


def hypergradient_cuda(meta: MetaParams, train_loss, valid_loss, noise, types, fmt=FixedFormat()):
    """Exact hypergradients computed on the GPU; train_loss must be an ``MLPTrainingLoss``."""
    net, train, B = train_loss.net, train_loss.train, train_loss.batch_size
    types = np.ascontiguousarray(types, np.int64)
    schedule = meta.schedule()
    T, G = schedule.lr.shape
    P = net.n_params
    opt = CudaReversibleSGD(initial_weights(meta, noise, types), schedule, group=types, fmt=fmt)
    w0_fixed = opt.w.copy_to_host()
    idx = np.stack([batch_indices(len(train), B, train_loss.seed, train_loss.meta_iter, t)
                    for t in range(T)])
    d = cuda.to_device
    idx_d, y_d, X_all = d(idx), d(train.y[idx]), d(train.X)
    l2_d = d(np.ascontiguousarray(train_loss._l2))
    types_d = d(types)
    lr_d, omg_d, mom_d = d(schedule.lr), d(schedule.one_minus_g), d(schedule.momenta)
    mlp = CudaMLP(net, B)
    Xb = cuda.device_array((B, net.sizes[0]))
    zeros = d(np.zeros(P))
    grid1 = blocks(P)

    def batch(t):
        K.gather_rows_kernel[_grid2(B, net.sizes[0]), T2](X_all, idx_d[t], Xb)
        return Xb

    def grad_fn(w, t):
        mlp.run(w, batch(t), y_d[t], l2_d, zeros, want_grad=True, want_r=False, want_loss=False)
        return mlp.grad

    t0 = time.perf_counter()
    opt.forward(grad_fn)
    w_final = opt.weights   # copies to the host, so the forward run has finished
    forward_s = time.perf_counter() - t0
    vmlp = CudaMLP(net, len(valid_loss.split))
    vmlp.run(d(w_final), d(valid_loss.split.X), d(valid_loss.split.y), d(np.zeros(P)), zeros,
             want_grad=True, want_r=False)
    loss = float(vmlp.loss.copy_to_host()[0])
    dw = cuda.device_array(P)
    dw.copy_to_device(vmlp.grad)
    dv, u, tmp = d(np.zeros(P)), cuda.device_array(P), cuda.device_array(P)
    v_buf = cuda.device_array(P)
    d_lr, d_g = d(np.zeros((T, G))), d(np.zeros((T, G)))
    d_l2, d_X = d(np.zeros(P)), d(np.zeros_like(train.X))
    for t in range(T - 1, -1, -1):
        K.product_kernel[grid1, THREADS](dw, opt.velocity_device(v_buf), zeros, tmp)
        K.group_sums_kernel[G, K.GROUP_THREADS](tmp, types_d, d_lr[t])
        K.sweep_pre_kernel[grid1, THREADS](dv, dw, lr_d, types_d, t, omg_d, u)
        opt.unstep_weights()
        w_t = opt.weights_device()
        mlp.run(w_t, batch(t), y_d[t], l2_d, u, want_grad=True, want_r=True, want_loss=False)
        opt.unstep_velocity(mlp.grad)
        K.product_kernel[grid1, THREADS](dv, opt.velocity_device(v_buf), mlp.grad, tmp)
        K.group_sums_kernel[G, K.GROUP_THREADS](tmp, types_d, d_g[t])
        K.sweep_post_kernel[grid1, THREADS](dv, dw, mlp.hvp, mom_d, types_d, t, d_l2, u, l2_d, w_t)
        K.scatter_sub_rows_kernel[_grid2(B, net.sizes[0]), T2](d_X, idx_d[t], mlp.rda[0])
    opt.check()
    reverse_s = time.perf_counter() - t0 - forward_s
    opt.verify_restored()
    restored = bool(np.array_equal(opt.w.copy_to_host(), w0_fixed))
    lr, g = schedule.lr, schedule.momenta
    d_lr_h, d_g_h, dw_h = d_lr.copy_to_host(), d_g.copy_to_host(), dw.copy_to_host()
    w0 = fmt.to_float(w0_fixed)
    grads = {"log_lr": d_lr_h * lr, "logit_momentum": d_g_h * g * (1.0 - g),
             "log_init_scale": np.bincount(types, weights=dw_h * w0, minlength=G),
             "momentum": d_g_h, "lr": d_lr_h, "log_l2": d_l2.copy_to_host(), "train_X": d_X.copy_to_host()}
    return HypergradResult(loss, grads, w_final, restored, 2 * T, T, int(2 * opt.counts.copy_to_host().sum()),
                           {"forward_steps": T, "device": "cuda", "forward_s": forward_s,
                            "reverse_s": reverse_s})
