"""The MLP's loss, gradient, Hessian-vector product and input R-term on the GPU (numba.cuda).

Same maths and parameter layout as ``mlp_kernels.py``; every array stays on the device. Each output
element is computed by one thread in a fixed order, so a call gives the same bits every time.
"""

import numpy as np
from numba import cuda

from ..kernels import cuda as K
from .mlp import ACTIVATIONS, MLP

T2 = (16, 16)


def _grid2(rows, cols):
    return ((rows + T2[0] - 1) // T2[0], (cols + T2[1] - 1) // T2[1])


class CudaMLP:
    """Device workspaces for ``net`` at batch size ``batch``; methods take and return device arrays."""

    def __init__(self, net: MLP, batch: int):
        self.net, self.B = net, int(batch)
        self.sizes = net.sizes
        self.act = ACTIVATIONS[net.activation]
        self.offsets = []
        o = 0
        for n, m in zip(self.sizes[:-1], self.sizes[1:]):
            self.offsets.append((o, o + n * m))
            o += n * m + m
        B = self.B
        dev = cuda.device_array
        self.acts = [dev((B, n)) for n in self.sizes]        # a_0 = X, a_l hidden
        self.pre = [None] + [dev((B, n)) for n in self.sizes[1:]]
        self.racts = [dev((B, n)) for n in self.sizes]
        self.rpre = [None] + [dev((B, n)) for n in self.sizes[1:]]
        self.dz = [None] + [dev((B, n)) for n in self.sizes[1:]]
        self.rdz = [None] + [dev((B, n)) for n in self.sizes[1:]]
        self.da = [dev((B, n)) for n in self.sizes[:-1]]
        self.rda = [dev((B, n)) for n in self.sizes[:-1]]
        self.row_loss = dev(B)
        self.loss = dev(1)
        self.grad = dev(net.n_params)
        self.hvp = dev(net.n_params)

    def run(self, params, X, y, l2, vec, want_grad=True, want_r=True, want_loss=True):
        """Fill self.loss, self.grad, self.hvp and self.rda[0] (= R{dL/dX}); X is (B, n_0) on device.

        want_loss=False skips the loss value (a serial sum over the parameters), which a training step
        does not need.
        """
        B, L = self.B, len(self.sizes) - 1
        self.acts[0] = X
        zero = self.racts[0]
        zero_fill[_grid2(B, self.sizes[0]), T2](zero)
        for l in range(L):
            n, m = self.sizes[l], self.sizes[l + 1]
            w_off, b_off = self.offsets[l]
            g = _grid2(B, m)
            K.matmul_kernel[g, T2](self.acts[l], params, w_off, b_off, self.pre[l + 1], False)
            if want_r:
                K.matmul_kernel[g, T2](self.acts[l], vec, w_off, b_off, self.rpre[l + 1], False)
                K.matmul_kernel[g, T2](self.racts[l], params, w_off, -1, self.rpre[l + 1], True)
            if l < L - 1:
                K.activate_kernel[g, T2](self.pre[l + 1], self.act, self.acts[l + 1], self.rpre[l + 1],
                                         self.racts[l + 1], want_r)
        K.softmax_ce_kernel[(B + 127) // 128, 128](self.pre[L], y, self.rpre[L], self.dz[L], self.rdz[L],
                                                   self.row_loss, want_grad, want_r)
        if want_loss:
            K.l2_loss_kernel[1, 1](self.row_loss, params, l2, self.loss)
        if not want_grad:
            return
        for l in range(L - 1, -1, -1):
            n, m = self.sizes[l], self.sizes[l + 1]
            w_off, b_off = self.offsets[l]
            go = _grid2(n + 1, m)
            K.outer_grad_kernel[go, T2](self.acts[l], self.dz[l + 1], self.grad, w_off, b_off, False)
            if want_r:
                K.outer_grad_kernel[go, T2](self.acts[l], self.rdz[l + 1], self.hvp, w_off, b_off, False)
                K.outer_grad_kernel[go, T2](self.racts[l], self.dz[l + 1], self.hvp, w_off, -1, True)
            gb = _grid2(B, n)
            K.matmul_t_kernel[gb, T2](self.dz[l + 1], params, w_off, self.da[l], False)
            if want_r:
                K.matmul_t_kernel[gb, T2](self.rdz[l + 1], params, w_off, self.rda[l], False)
                K.matmul_t_kernel[gb, T2](self.dz[l + 1], vec, w_off, self.rda[l], True)
            if l > 0:
                K.hidden_back_kernel[gb, T2](self.da[l], self.rda[l], self.acts[l], self.pre[l],
                                             self.rpre[l], self.act, self.dz[l], self.rdz[l], want_r)
        P = self.net.n_params
        K.l2_terms_kernel[(P + 255) // 256, 256](params, l2, vec, self.grad, self.hvp, want_r)

    def grad_hvp_host(self, params, X, y, vec, l2=None):
        """Convenience for tests: host arrays in, host (loss, grad, hvp, rdx) out."""
        P = self.net.n_params
        l2 = np.zeros(P) if l2 is None else np.broadcast_to(l2, (P,)).astype(np.float64)
        self.run(cuda.to_device(np.ascontiguousarray(params, np.float64)),
                 cuda.to_device(np.ascontiguousarray(X, np.float64)),
                 cuda.to_device(np.ascontiguousarray(y, np.int64)), cuda.to_device(l2),
                 cuda.to_device(np.ascontiguousarray(vec, np.float64)))
        return (float(self.loss.copy_to_host()[0]), self.grad.copy_to_host(), self.hvp.copy_to_host(),
                self.rda[0].copy_to_host())


@cuda.jit
def zero_fill(a):
    b, j = cuda.grid(2)
    if b < a.shape[0] and j < a.shape[1]:
        a[b, j] = 0.0
