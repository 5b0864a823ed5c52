"""One entry point for every optimiser and method: ``exactrev.hypergradient``.

The meta-parameters say which family trains (``MetaParams``: momentum SGD or Nesterov;
``AdamMetaParams``: Adam or AdamW), ``optimizer`` picks within it, ``method`` how the reverse sweep gets
each step's state back. Every combination the engine supports is reachable from here with the same
arguments; one it does not support is refused by name before anything runs.
"""

import numpy as np

from ..exact.buffer import BufferMismatchError
from ..exact.fixedpoint import FixedFormat
from . import checkpointing  # noqa: F401  (registers the 'checkpoint' walk)
from .adjoints import AdamAdjoint, MomentumAdjoint, NesterovAdjoint
from .meta import AdamMetaParams, HypergradResult, MetaParams, initial_weights
from .sweep import WALKS, reverse_sweep

# optimizer -> (meta-parameter class name, methods, devices)
SUPPORTED = {
    "sgd": ("MetaParams", ("reversal", "store", "checkpoint"), ("cpu", "cuda")),
    "nesterov": ("MetaParams", ("reversal", "store", "checkpoint"), ("cpu",)),
    "adam": ("AdamMetaParams", ("reversal", "store", "checkpoint"), ("cpu",)),
    "adamw": ("AdamMetaParams", ("reversal", "store", "checkpoint"), ("cpu",)),
}


def _family(meta, optimizer):
    if isinstance(meta, AdamMetaParams):
        kind, default = "AdamMetaParams", "adam"
    elif isinstance(meta, MetaParams):
        kind, default = "MetaParams", "sgd"
    else:
        raise TypeError(f"meta must be a MetaParams (sgd, nesterov) or an AdamMetaParams (adam, adamw), "
                        f"got {type(meta).__name__}")
    optimizer = default if optimizer is None else optimizer
    if optimizer not in SUPPORTED:
        raise ValueError(f"optimizer must be one of {sorted(SUPPORTED)}, got {optimizer!r}")
    if SUPPORTED[optimizer][0] != kind:
        raise ValueError(f"optimizer {optimizer!r} takes {SUPPORTED[optimizer][0]}, got {kind}")
    return optimizer


def hypergradient(meta, train_loss, valid_loss, noise, types, *, optimizer=None, method="reversal",
                  device="cpu", progress=False, fmt=None, snapshots=None, nesterov_memory=None,
                  comm=None) -> HypergradResult:
    """Train from w_0 = exp(log_init_scale[types]) * noise for meta.steps steps, then return the
    validation loss at w_T and its exact gradient with respect to every meta-parameter.

    meta: ``MetaParams`` (optimizer 'sgd', the default, or 'nesterov') or ``AdamMetaParams``
    ('adam', the default, or 'adamw': the same sweep, weight decay from ``meta.log_weight_decay``).
    train_loss: ``grad(w, t)``, ``grad_and_vjp(w, t, u)``, ``meta_shapes()`` (docs/your-model.md);
    valid_loss: ``value_and_grad(w)``. noise: float64[P]; types: int64[P] in [0, G).
    method: 'reversal' (exact, O(P) memory plus the buffer), 'store' (the trajectory kept: the
    reference) or 'checkpoint' (Revolve, ``snapshots`` of them, default ceil(sqrt(T))). device: 'cpu',
    or 'cuda' (sgd with reversal, an ``MLPTrainingLoss``). fmt: the weights' ``FixedFormat`` (sgd,
    nesterov).
    nesterov_memory: the gradient memory h of Nesterov (default 1/256). progress: tqdm bars.
    comm: an MPI communicator (mpi4py) for data-parallel training and reversal across its ranks
    (momentum SGD by reversal, an ``MLPTrainingLoss``; ``exactrev.parallel``): every rank calls with
    the same arguments and gets the same result, the same bits for any number of ranks.

    Returns a ``HypergradResult``: ``.loss``, ``.grads`` (name -> array shaped like the
    meta-parameter, plus what the training loss owns), ``.final_weights``, ``.restored``.
    """
    optimizer = _family(meta, optimizer)
    _, methods, devices = SUPPORTED[optimizer]
    if method not in methods:
        raise ValueError(f"method must be one of {methods} for optimizer {optimizer!r}, got {method!r}")
    if device not in devices:
        raise ValueError(f"device must be one of {devices} for optimizer {optimizer!r}, got {device!r}")
    if device == "cuda" and method != "reversal":
        raise ValueError("device='cuda' supports method='reversal' only")
    if snapshots is not None and method != "checkpoint":
        raise ValueError("snapshots is for method='checkpoint'")
    if nesterov_memory is not None and optimizer != "nesterov":
        raise ValueError("nesterov_memory is for optimizer='nesterov'")
    if comm is not None and (optimizer, method, device) != ("sgd", "reversal", "cpu"):
        raise ValueError("comm (data-parallel runs) supports optimizer='sgd', method='reversal' on the cpu")
    fmt = FixedFormat() if fmt is None else fmt
    if comm is not None:
        return _parallel_sweep(meta, train_loss, valid_loss, noise, types, progress, fmt, comm)
    try:
        return _sweep(meta, train_loss, valid_loss, noise, types, optimizer, method, device, progress, fmt,
                      snapshots, nesterov_memory)
    except BufferMismatchError as exc:
        from .losses import MLPTrainingLoss

        if isinstance(train_loss, MLPTrainingLoss):
            raise
        raise type(exc)(f"{exc}. With a training loss of your own, check that grad(w, t) and the gradient "
                        "that grad_and_vjp(w, t, u) returns are the same floats, and that both depend on "
                        "(w, t) only: with exactrev.jax, that batch(t) gives the same batch at every call "
                        "(docs/your-model.md)") from exc


def checked_types(types, noise, meta):
    """types as int64[P] (P = len(noise)), each in [0, G) for G = meta.log_lr.shape[1]; ValueError
    naming the first weight that is not."""
    types = np.ascontiguousarray(types, np.int64)
    G = meta.log_lr.shape[1]
    if types.shape != np.shape(noise):
        raise ValueError(f"types has shape {types.shape}, noise {np.shape(noise)}: one weight type per weight")
    bad = (types < 0) | (types >= G)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"types[{i}] = {types[i]}, but meta has {G} weight types (columns of log_lr): "
                         f"types must lie in [0, {G})")
    return types


def _optimiser(meta, noise, types, optimizer, fmt, nesterov_memory, reversible=True):
    """The optimiser ``hypergradient`` and ``train`` run, at w_0 = exp(log_init_scale[types]) * noise.
    Momentum SGD without reversal runs ``PlainFixedSGD`` (no buffer)."""
    w0 = initial_weights(meta, noise, types)
    schedule = meta.schedule()
    if optimizer == "sgd":
        from ..optim.sgd import PlainFixedSGD, ReversibleSGD

        return (ReversibleSGD if reversible else PlainFixedSGD)(w0, schedule, group=types, fmt=fmt)
    if optimizer == "nesterov":
        from ..optim.nesterov import DEFAULT_MEMORY, ReversibleNesterov

        memory = DEFAULT_MEMORY if nesterov_memory is None else nesterov_memory
        return ReversibleNesterov(w0, schedule, group=types, memory=memory, fmt=fmt)
    from ..optim.adam import ReversibleAdam

    if fmt != FixedFormat():
        raise ValueError("fmt is for sgd and nesterov; Adam keeps its own formats for w, m and s")
    return ReversibleAdam(w0, schedule, group=types)


def _sweep(meta, train_loss, valid_loss, noise, types, optimizer, method, device, progress, fmt, snapshots,
           nesterov_memory):
    if device == "cuda":
        from ..kernels.cuda_device import require_cuda
        from .hypergrad_cuda import hypergradient_cuda

        require_cuda()
        return hypergradient_cuda(meta, train_loss, valid_loss, noise, checked_types(types, noise, meta), fmt,
                                  progress)
    types = checked_types(types, noise, meta)
    opt = _optimiser(meta, noise, types, optimizer, fmt, nesterov_memory, reversible=method == "reversal")
    walk = WALKS[method](opt, snapshots) if method == "checkpoint" else WALKS[method](opt)
    schedule = opt.schedule
    if optimizer == "sgd":
        adjoint = MomentumAdjoint(schedule, types, train_loss)
    elif optimizer == "nesterov":
        adjoint = NesterovAdjoint(schedule, types, train_loss, opt.memory)
    else:
        adjoint = AdamAdjoint(schedule, types, train_loss)
    result = reverse_sweep(adjoint, walk, train_loss, valid_loss, progress)
    result.stats.setdefault("optimizer", optimizer)
    return result


def _parallel_sweep(meta, train_loss, valid_loss, noise, types, progress, fmt, comm):
    from ..parallel.data_parallel import DataParallelLoss
    from ..parallel.sharded import ShardedSGD

    loss = train_loss if isinstance(train_loss, DataParallelLoss) else DataParallelLoss(train_loss, comm)
    types = checked_types(types, noise, meta)
    opt = ShardedSGD(initial_weights(meta, noise, types), meta.schedule(), comm, group=types, fmt=fmt)
    result = reverse_sweep(MomentumAdjoint(opt.schedule, types, loss), WALKS["reversal"](opt), loss, valid_loss,
                           progress and comm.rank == 0)
    result.stats.update(optimizer="sgd", ranks=comm.size, allreduce_bytes=dict(loss.reduced_bytes),
                        allgather_bytes=dict(opt.exchanged_bytes))
    return result


def train(meta, grad_fn, noise, types, *, optimizer=None, fmt=None, nesterov_memory=None, progress=False,
          comm=None):
    """Train once, forward only, as ``hypergradient`` would (same optimiser, same w_0 and schedules),
    and return the final weights float64[P]. grad_fn(w, t) -> float64[P], e.g. ``train_loss.grad``.
    With ``comm``, the weights are split across its ranks (``ShardedSGD``) and grad_fn must give every
    rank the same floats (``exactrev.parallel.DataParallelLoss(...).grad``)."""
    optimizer = _family(meta, optimizer)
    types = checked_types(types, noise, meta)
    fmt = FixedFormat() if fmt is None else fmt
    if comm is not None:
        from ..parallel.sharded import ShardedSGD

        if optimizer != "sgd":
            raise ValueError("comm (data-parallel runs) supports optimizer='sgd'")
        opt = ShardedSGD(initial_weights(meta, noise, types), meta.schedule(), comm, group=types, fmt=fmt)
        opt.forward(grad_fn, progress=progress)
        return opt.weights
    opt = _optimiser(meta, noise, types, optimizer, fmt, nesterov_memory)
    opt.forward(grad_fn, progress=progress)
    return opt.weights
