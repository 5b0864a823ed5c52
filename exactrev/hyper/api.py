"""One entry point for every optimiser and method: ``exactrev.hypergradient``.

The meta-parameters say which family trains (``MetaParams``: momentum SGD or Nesterov;
``AdamMetaParams``: Adam or AdamW), ``optimizer`` picks within it, ``method`` how the reverse sweep gets
each step's state back. Every combination the engine supports is reachable from here with the same
arguments; one it does not support is refused by name before anything runs.
"""

from ..exact.buffer import BufferMismatchError
from ..exact.fixedpoint import FixedFormat
from .hypergrad import HypergradResult, MetaParams, initial_weights

# optimizer -> (meta-parameter class name, methods, devices)
SUPPORTED = {
    "sgd": ("MetaParams", ("reversal", "store", "checkpoint"), ("cpu", "cuda")),
    "nesterov": ("MetaParams", ("reversal", "store"), ("cpu",)),
    "adam": ("AdamMetaParams", ("reversal", "store"), ("cpu",)),
    "adamw": ("AdamMetaParams", ("reversal", "store"), ("cpu",)),
}


def _family(meta, optimizer):
    from .hypergrad_adam import AdamMetaParams

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
                  device="cpu", progress=False, fmt=None, snapshots=None, nesterov_memory=None
                  ) -> HypergradResult:
    """Train from w_0 = exp(log_init_scale[types]) * noise for meta.steps steps, then return the
    validation loss at w_T and its exact gradient with respect to every meta-parameter.

    meta: ``MetaParams`` (optimizer 'sgd', the default, or 'nesterov') or ``AdamMetaParams``
    ('adam', the default, or 'adamw': the same sweep, weight decay from ``meta.log_weight_decay``).
    train_loss: ``grad(w, t)``, ``grad_and_vjp(w, t, u)``, ``meta_shapes()`` (docs/your-model.md);
    valid_loss: ``value_and_grad(w)``. noise: float64[P]; types: int64[P] in [0, G).
    method: 'reversal' (exact, O(P) memory plus the buffer), 'store' (the trajectory kept: the
    reference) or, for sgd, 'checkpoint' (Revolve, ``snapshots`` of them). device: 'cpu', or 'cuda'
    (sgd with reversal, an ``MLPTrainingLoss``). fmt: the weights' ``FixedFormat`` (sgd, nesterov).
    nesterov_memory: the gradient memory h of Nesterov (default 1/256). progress: tqdm bars.

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
    fmt = FixedFormat() if fmt is None else fmt
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


def _sweep(meta, train_loss, valid_loss, noise, types, optimizer, method, device, progress, fmt, snapshots,
           nesterov_memory):
    if optimizer == "sgd":
        from .hypergrad import hypergradient as sweep

        kwargs = {"snapshots": snapshots} if snapshots is not None else None
        return sweep(meta, train_loss, valid_loss, noise, types, method=method, fmt=fmt, progress=progress,
                     trajectory_kwargs=kwargs, device=device)
    if optimizer == "nesterov":
        from ..optim.nesterov import DEFAULT_MEMORY
        from .hypergrad_nesterov import nesterov_hypergradient

        memory = DEFAULT_MEMORY if nesterov_memory is None else nesterov_memory
        return nesterov_hypergradient(meta, train_loss, valid_loss, noise, types, method=method,
                                      memory=memory, fmt=fmt, progress=progress)
    from .hypergrad_adam import adam_hypergradient

    if fmt != FixedFormat():
        raise ValueError("fmt is for sgd and nesterov; Adam keeps its own formats (adam_hypergradient)")
    return adam_hypergradient(meta, train_loss, valid_loss, noise, types, method=method, progress=progress)


def train(meta, grad_fn, noise, types, *, optimizer=None, fmt=None, nesterov_memory=None, progress=False):
    """Train once, forward only, as ``hypergradient`` would (same optimiser, same w_0 and schedules),
    and return the final weights float64[P]. grad_fn(w, t) -> float64[P], e.g. ``train_loss.grad``."""
    import numpy as np

    optimizer = _family(meta, optimizer)
    types = np.ascontiguousarray(types, np.int64)
    w0 = initial_weights(meta, noise, types)
    fmt = FixedFormat() if fmt is None else fmt
    if optimizer == "sgd":
        from ..optim.sgd import ReversibleSGD

        opt = ReversibleSGD(w0, meta.schedule(), group=types, fmt=fmt)
    elif optimizer == "nesterov":
        from ..optim.nesterov import DEFAULT_MEMORY, ReversibleNesterov

        opt = ReversibleNesterov(w0, meta.schedule(), group=types, fmt=fmt,
                                 memory=DEFAULT_MEMORY if nesterov_memory is None else nesterov_memory)
    else:
        from ..optim.adam import ReversibleAdam

        opt = ReversibleAdam(w0, meta.schedule(), group=types)
    opt.forward(grad_fn, progress=progress)
    return opt.weights
