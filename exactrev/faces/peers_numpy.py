"""Plain numpy float64 training of an exactrev MLP: what a user would write without exactrev.

The second baseline of the forward row of ``exactrev bench --suite training``, beside the float64
loop on exactrev's own MLP passes: numpy's matrix product (its BLAS, at its own threads) and numpy's
``tanh``, the softmax cross-entropy gradient by hand, and momentum SGD on float64 arrays, with the
mini-batches, the initial weights and the schedules of ``bench_training.PaperProblem``. Its
gradients agree with exactrev's MLP passes to float rounding (``tests/test_faces.py``), not to the
bit: another order of sums.

Maths (rows of the batch, B of them; ``model/mlp_kernels.py`` has the same derivation):

    forward   z_l = a_{l-1} W_l + b_l,  a_l = tanh z_l (hidden layers), logits z_L
    output    dz_L = (softmax(z_L) - onehot(y)) / B
    backward  dW_l = a_{l-1}^T dz_l,  db_l = sum_b dz_l,  dz_{l-1} = (dz_l W_l^T) (1 - a_{l-1}**2)
    step      v <- g v - (1 - g) grad,  w <- w + a v
"""

import numpy as np

from ..hyper.data import batch_indices
from ..model.mlp_blas import layer_views


def tanh_mlp_grad(layers, grads, X, y):
    """Write dL/dparams of the mean softmax cross-entropy of a tanh MLP on (X float64[B, n_0], y
    int[B]) into ``grads`` (layer views like ``layers``); returns the loss."""
    acts = [X]
    for W, b in layers[:-1]:
        acts.append(np.tanh(acts[-1] @ W + b))
    W, b = layers[-1]
    z = acts[-1] @ W + b
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    total = e.sum(axis=1, keepdims=True)
    rows = np.arange(X.shape[0])
    loss = float(np.mean(np.log(total[:, 0]) - z[rows, y]))
    dz = e / total
    dz[rows, y] -= 1.0
    dz /= X.shape[0]
    for l in range(len(layers) - 1, -1, -1):
        GW, Gb = grads[l]
        np.matmul(acts[l].T, dz, out=GW)
        dz.sum(axis=0, out=Gb)
        if l > 0:
            dz = (dz @ layers[l][0].T) * (1.0 - acts[l] ** 2)
    return loss


def numpy_training(prob):
    """Weights float64[P] after ``prob.steps`` steps of plain numpy float64 momentum SGD on the problem
    ``prob`` (a ``bench_training.PaperProblem``): its batches, w_0 and schedules."""
    sched = prob.meta.schedule()
    train = prob.train
    w = prob.w0()
    v = np.zeros_like(w)
    g = np.empty_like(w)
    layers, grads = layer_views(w, prob.net.sizes), layer_views(g, prob.net.sizes)
    X_all, y_all = train.train.X, train.train.y
    for t in range(prob.steps):
        idx = batch_indices(len(train.train), train.batch_size, train.seed, train.meta_iter, t)
        tanh_mlp_grad(layers, grads, X_all[idx], y_all[idx])
        gamma = sched.momenta[t][prob.types]
        v *= gamma
        v -= (1.0 - gamma) * g
        w += sched.lr[t][prob.types] * v
    return w
