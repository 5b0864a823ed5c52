"""The MLP training loss split across ranks, with sums that give the same bits for any rank count.

The step's mini-batch of B rows (``MLPTrainingLoss.batch(t)``, the same on every rank) is cut into fixed
chunks of ``chunk`` rows: rows [0, c), [c, 2c), ... Rank r computes the chunks j with j % P == r. Each
chunk's mean-loss gradient, scaled by its share of the batch (rows / B), is rounded to fixed point
(``REDUCE``: 40 fractional bits) and the chunks are added as int64; one int64 ``Allreduce`` adds the
ranks' sums. Integer addition is associative, and a chunk's floats do not depend on which rank computes
it, so the total is the same integers for 1, 2 or P ranks. The reverse sweep's Hessian-vector product
and the mixed term of the training inputs are summed the same way; the L2 penalty's terms are
element-wise and computed by every rank alike.

Bytes each step's all-reduce moves per rank: 8 P_w for the gradient (P_w = number of weights); in the
reverse sweep 16 P_w (gradient and H u), plus 8 B F for the inputs' term when ``train_X`` is learned.
"""

import numpy as np

from ..exact.fixedpoint import FixedFormat
from ..hyper.losses import MLPTrainingLoss, RowTerm
from .comm import agree, allreduce_int

REDUCE = FixedFormat(40)
"""The fixed-point format of the sums: range +-8192, resolution 9.1e-13."""
CHUNK = 25
"""Rows per chunk: 8 chunks of a batch of 200. Smaller chunks spread over more ranks and cost more
small matrix products (one gradient of the paper's MLP on 200 rows: 0.88 ms whole, 1.25 ms in chunks
of 50, 2.1 ms of 25, 4.4 ms of 10 on one core)."""


class DataParallelLoss:
    """``base``'s loss (an ``MLPTrainingLoss``) with its batch shared among the ranks of ``comm``
    (module docstring); the training-loss protocol of ``hyper/losses.py``. Every rank gets the same
    full gradient, H u and mixed terms."""

    def __init__(self, base: MLPTrainingLoss, comm, chunk=CHUNK):
        if not isinstance(base, MLPTrainingLoss):
            raise TypeError(f"data-parallel training takes an MLPTrainingLoss, got {type(base).__name__}")
        if int(chunk) < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.base, self.comm, self.net = base, comm, base.net
        B = base.batch_size
        self.bounds = [(s, min(s + int(chunk), B)) for s in range(0, B, int(chunk))]
        self.mine = [j for j in range(len(self.bounds)) if j % comm.size == comm.rank]
        self.reduced_bytes = {"grad": 0, "grad_and_vjp": 0}   # bytes this rank sent to all-reduces

    def meta_names(self):
        return self.base.meta

    def meta_shapes(self):
        return self.base.meta_shapes()

    def _reduce(self, local, kind):
        self.reduced_bytes[kind] += local.nbytes
        return allreduce_int(self.comm, local)

    def _chunks(self, t, fn):
        """[(rows s:e, fn(X_chunk, y_chunk, share))] for this rank's chunks of step t's batch."""
        idx, X, y = self.base.batch(t)
        B = len(idx)
        return idx, [((s, e), fn(X[s:e], y[s:e], (e - s) / B)) for s, e in (self.bounds[j] for j in self.mine)]

    def grad(self, w, t):
        def local():
            acc = np.zeros(self.net.n_params, np.int64)
            for (s, e), g in self._chunks(t, lambda X, y, share: self.net.loss_grad(w, X, y)[1] * share)[1]:
                acc += REDUCE.to_fixed(g, name=f"step {t}: the gradient of batch rows {s}-{e}, weight")
            return acc

        total = self._reduce(agree(self.comm, f"step {t}", local), "grad")
        return REDUCE.to_float(total) + self.base._l2 * w

    def grad_and_vjp(self, w, t, u):
        want_x = "train_X" in self.base.meta
        P, F = self.net.n_params, self.net.sizes[0]

        def local():
            acc = np.zeros(2 * P, np.int64)
            rows = np.zeros((self.base.batch_size, F), np.int64) if want_x else None

            def one(X, y, share):
                _, g, h, rdx = self.net.grad_hvp(w, X, y, u, input_terms=want_x)
                return g * share, h * share, None if rdx is None else rdx * share

            idx, parts = self._chunks(t, one)
            for (s, e), (g, h, rdx) in parts:
                acc[:P] += REDUCE.to_fixed(g, name=f"step {t}: the gradient of batch rows {s}-{e}, weight")
                acc[P:] += REDUCE.to_fixed(h, name=f"step {t}: H u of batch rows {s}-{e}, weight")
                if want_x:
                    rows[s:e] = REDUCE.to_fixed(rdx, name=f"step {t}: the inputs' term of batch rows {s}-{e}")
            return acc if rows is None else np.concatenate([acc, rows.ravel()])

        total = self._reduce(agree(self.comm, f"step {t}", local), "grad_and_vjp")
        l2 = self.base._l2
        grad = REDUCE.to_float(total[:P]) + l2 * w
        hvp = REDUCE.to_float(total[P:2 * P]) + l2 * u
        mixed = {}
        if "log_l2" in self.base.meta:
            mixed["log_l2"] = u * l2 * w
        if want_x:
            idx = self.base.batch(t)[0]
            mixed["train_X"] = RowTerm(idx, REDUCE.to_float(total[2 * P:]).reshape(len(idx), F))
        return grad, hvp, mixed
