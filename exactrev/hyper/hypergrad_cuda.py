"""The hypergradient sweep with everything on the GPU: ``hypergradient(..., device="cuda")``.

The same sweep (``sweep.reverse_sweep``) and the same equations as momentum SGD's step adjoint
(``adjoints.MomentumAdjoint``), with a walk and an adjoint that keep the weights, the velocity, the
buffer, the adjoints and the mini-batches on the device: the batches of all T steps are uploaded once,
and per-type sums use a fixed-order block reduction. The host reads the results once, at the end.
The MLP training loss with a per-weight L2 penalty and the training inputs as meta-parameters is built
in (``MLPTrainingLoss``'s meta-parameters).
"""

import numpy as np
from numba import cuda

from ..exact.fixedpoint import FixedFormat
from ..kernels import cuda as K
from ..model.mlp_cuda import CudaMLP, _grid2, T2
from ..optim.sgd_cuda import THREADS, CudaReversibleSGD, blocks
from .data import batch_indices
from .adjoints import MomentumAdjoint
from .meta import MetaParams, initial_weights
from .sweep import Reversal, Walk, reverse_sweep


class CudaReversal(Reversal):
    """Exact reversal of ``CudaReversibleSGD``; the forward run takes its gradients from the device MLP."""

    def __init__(self, opt, device_grad):
        Walk.__init__(self, opt)
        self._w0_fixed = opt.w.copy_to_host()
        self._device_grad = device_grad
        self.stats = {"device": "cuda"}

    def run_forward(self, grad_fn, progress=False):
        self.opt.forward(self._counted(self._device_grad), progress=progress)
        self.stats["buffer_bytes_peak"] = int(2 * self.opt.counts.copy_to_host().sum())

    def finish(self):
        self.opt.check()
        self.opt.verify_restored()
        return bool(np.array_equal(self.opt.w.copy_to_host(), self._w0_fixed))

    def extra_bytes(self):
        return self.stats["buffer_bytes_peak"]


class CudaMomentumAdjoint(MomentumAdjoint):
    """``MomentumAdjoint`` on device arrays, with the device MLP's gradient, R-op and mixed terms."""

    def __init__(self, schedule, types, train_loss, mlp, batch, idx_d, y_d):
        self.steps, self.groups = schedule.lr.shape
        self.types, self.lr, self.g = types, schedule.lr, schedule.momenta
        self.train_loss = train_loss
        self.mlp, self.batch, self.idx_d, self.y_d = mlp, batch, idx_d, y_d
        P = train_loss.net.n_params
        d = cuda.to_device
        self.types_d = d(types)
        self.lr_d, self.omg_d, self.mom_d = d(schedule.lr), d(schedule.one_minus_g), d(schedule.momenta)
        self.l2_d = d(np.ascontiguousarray(train_loss._l2))
        self.zeros = d(np.zeros(P))
        self.grid = blocks(P)
        self.d_lr, self.d_g = d(np.zeros(schedule.lr.shape)), d(np.zeros(schedule.lr.shape))
        self.d_l2, self.d_X = d(np.zeros(P)), d(np.zeros_like(train_loss.train.X))
        self.u, self.tmp = cuda.device_array(P), cuda.device_array(P)
        self.grad_evals = self.hvp_evals = 0

    def start(self, valid_loss, w_final):
        net, P = self.train_loss.net, self.train_loss.net.n_params
        vmlp = CudaMLP(net, len(valid_loss.split))
        vmlp.run(cuda.to_device(w_final), cuda.to_device(valid_loss.split.X),
                 cuda.to_device(valid_loss.split.y), cuda.to_device(np.zeros(P)), self.zeros,
                 want_grad=True, want_r=False)
        self.dw = cuda.device_array(P)
        self.dw.copy_to_device(vmlp.grad)
        self.dv = cuda.to_device(np.zeros(P))
        return float(vmlp.loss.copy_to_host()[0])

    def step_back(self, t, walk):
        g1, th, mlp, u, tmp = self.grid, THREADS, self.mlp, self.u, self.tmp
        (v_next,) = walk.state()
        K.product_kernel[g1, th](self.dw, v_next, self.zeros, tmp)
        K.group_sums_kernel[self.groups, K.GROUP_THREADS](tmp, self.types_d, self.d_lr[t])
        K.sweep_pre_kernel[g1, th](self.dv, self.dw, self.lr_d, self.types_d, t, self.omg_d, u)
        w_t = walk.back_point()
        mlp.run(w_t, self.batch(t), self.y_d[t], self.l2_d, u, want_grad=True, want_r=True,
                want_loss=False)
        self.grad_evals += 1
        self.hvp_evals += 1
        (v_t,) = walk.back_state(mlp.grad)
        K.product_kernel[g1, th](self.dv, v_t, mlp.grad, tmp)
        K.group_sums_kernel[self.groups, K.GROUP_THREADS](tmp, self.types_d, self.d_g[t])
        K.sweep_post_kernel[g1, th](self.dv, self.dw, mlp.hvp, self.mom_d, self.types_d, t, self.d_l2, u,
                                    self.l2_d, w_t)
        K.scatter_sub_rows_kernel[_grid2(len(self.y_d[t]), self.train_loss.net.sizes[0]), T2](
            self.d_X, self.idx_d[t], mlp.rda[0])

    def grads(self, w0):
        """The host reads the adjoints once; the formulas are ``MomentumAdjoint``'s."""
        self.d_lr, self.d_g, self.dw = (a.copy_to_host() for a in (self.d_lr, self.d_g, self.dw))
        self.d_theta = {"log_l2": self.d_l2.copy_to_host(), "train_X": self.d_X.copy_to_host()}
        return super().grads(w0)


def hypergradient_cuda(meta: MetaParams, train_loss, valid_loss, noise, types, fmt=FixedFormat(),
                       progress=False):
    """Exact hypergradients computed on the GPU; train_loss must be an ``MLPTrainingLoss``."""
    net, train, B = train_loss.net, train_loss.train, train_loss.batch_size
    types = np.ascontiguousarray(types, np.int64)
    schedule = meta.schedule()
    T = schedule.steps
    opt = CudaReversibleSGD(initial_weights(meta, noise, types), schedule, group=types, fmt=fmt)
    idx = np.stack([batch_indices(len(train), B, train_loss.seed, train_loss.meta_iter, t)
                    for t in range(T)])
    idx_d, y_d, X_all = cuda.to_device(idx), cuda.to_device(train.y[idx]), cuda.to_device(train.X)
    mlp = CudaMLP(net, B)
    Xb = cuda.device_array((B, net.sizes[0]))

    def batch(t):
        K.gather_rows_kernel[_grid2(B, net.sizes[0]), T2](X_all, idx_d[t], Xb)
        return Xb

    adjoint = CudaMomentumAdjoint(schedule, types, train_loss, mlp, batch, idx_d, y_d)
    zeros = adjoint.zeros

    def device_grad(w, t):
        mlp.run(w, batch(t), y_d[t], adjoint.l2_d, zeros, want_grad=True, want_r=False, want_loss=False)
        return mlp.grad

    return reverse_sweep(adjoint, CudaReversal(opt, device_grad), train_loss, valid_loss, progress)
