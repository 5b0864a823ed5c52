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
    ``prob`` (a ``bench_training.PaperProblem``): its batches, w_0 and schedules, its float loop
    (``forward_float``) with the gradient of ``tanh_mlp_grad``."""
    sizes = prob.net.sizes
    g = np.empty(prob.net.n_params)
    grads = layer_views(g, sizes)
    held = [None, None]  # the weights array the loop updates in place, and its layer views

    def grad(w, t):
        if held[0] is not w:
            held[:] = w, layer_views(w, sizes)
        _, X, y = prob.train.batch(t)
        tanh_mlp_grad(held[1], grads, X, y)
        return g
    return prob.forward_float(grad)
