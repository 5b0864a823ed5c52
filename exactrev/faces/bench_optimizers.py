"""Reversible optimisers on the paper-sized MLP: buffer bits per weight per step against their entropy
bounds, and forward / reverse time per step against momentum SGD, measured in one run."""

import time

import numpy as np

from ..hyper.api import hypergradient
from ..hyper.meta import AdamMetaParams, MetaParams, initial_weights
from ..optim.adam import ReversibleAdam
from ..optim.nesterov import DEFAULT_MEMORY, ReversibleNesterov
from ..optim.sgd import ReversibleSGD
from .bench_training import PaperProblem


def measure_optimizer(prob, name):
    """One optimiser on ``prob`` (a PaperProblem): its buffer bits per weight per step and their bound,
    forward and reverse (hypergradient) milliseconds per step, and whether the reversal restored w_0."""
    T, G = prob.steps, prob.net.n_types
    if name == "sgd":
        meta = MetaParams.constant(T, G, 0.3, 0.9, 0.1)
        make = lambda: ReversibleSGD(initial_weights(meta, prob.noise, prob.types),  # noqa: E731
                                     meta.schedule(), group=prob.types)
        bound = float(meta.schedule().bits_per_step().mean())
    elif name == "nesterov":
        meta = MetaParams.constant(T, G, 0.3, 0.9, 0.1)
        make = lambda: ReversibleNesterov(initial_weights(meta, prob.noise, prob.types),  # noqa: E731
                                          meta.schedule(), group=prob.types, memory=DEFAULT_MEMORY)
        bound = float(make().step_bits().mean())
    else:
        meta = AdamMetaParams.constant(T, G, 0.01, 0.9, 0.999, 1e-8, 0.01 if name == "adamw" else 0.0, 0.1)
        make = lambda: ReversibleAdam(initial_weights(meta, prob.noise, prob.types),  # noqa: E731
                                      meta.schedule(), group=prob.types)
        bound = float(meta.schedule().bits_per_step().mean())
    opt = make()
    opt.forward(prob.train.grad)  # compile
    opt = make()
    t0 = time.perf_counter()
    opt.forward(prob.train.grad)
    fwd = time.perf_counter() - t0
    bits = opt.bits_per_weight_step()
    t0 = time.perf_counter()
    res = hypergradient(meta, prob.train, prob.valid, prob.noise, prob.types, optimizer=name)
    total = time.perf_counter() - t0
    return {"optimizer": name, "bits": bits, "bound": bound, "forward_ms": 1e3 * fwd / T,
            "reverse_ms": 1e3 * (total - fwd) / T, "restored": res.restored}


def optimizers_report(steps=100, out=print):
    prob = PaperProblem(steps)
    rows = [measure_optimizer(prob, name) for name in ("sgd", "nesterov", "adam", "adamw")]
    sgd = rows[0]
    out(f"Reversible optimisers, paper MLP (64-50-50-50-10 tanh, batch 200), T = {steps}")
    out(f"{'optimizer':>9} | {'bits/w/step':>11} | {'bound':>8} | {'excess':>7} | {'fwd ms/step':>11} | "
        f"{'rev ms/step':>11} | {'fwd/sgd':>7} | {'rev/sgd':>7} | restored")
    for r in rows:
        out(f"{r['optimizer']:>9} | {r['bits']:>11.5f} | {r['bound']:>8.5f} | "
            f"{100 * (r['bits'] / r['bound'] - 1):>+6.2f}% | {r['forward_ms']:>11.2f} | {r['reverse_ms']:>11.2f} | "
            f"{r['forward_ms'] / sgd['forward_ms']:>6.2f}x | {r['reverse_ms'] / sgd['reverse_ms']:>6.2f}x | "
            f"{r['restored']}")
    out("(Adam's reverse step evaluates the gradient twice, once for g and once with the HVP, because "
        "the HVP direction depends on g; nesterov is with gradient memory h = "
        f"{DEFAULT_MEMORY}, whose log2(1/h) = {np.log2(float(1 / DEFAULT_MEMORY)):.0f} bits dominate its cost)")
    return rows
