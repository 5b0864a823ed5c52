"""The MLP training loss: which meta-parameters it reports, and that leaving one out changes nothing else."""

import numpy as np
import pytest

from exactrev.hyper.data import load_digits
from exactrev.hyper.losses import MLPTrainingLoss, RowTerm
from exactrev.model.mlp import MLP


def _loss(**kwargs):
    data = load_digits(200, 50, seed=0)
    net = MLP((data.n_features, 8, data.n_classes))
    return MLPTrainingLoss(net, data.train, 20, log_l2=np.log(1e-3), **kwargs), net


def test_the_mixed_terms_are_those_named_in_meta_and_nothing_else_changes():
    full, net = _loss()
    w, u = np.random.default_rng(0).normal(size=(2, net.n_params)) * 0.1
    g, h, mixed = full.grad_and_vjp(w, 3, u)
    assert set(mixed) == set(full.meta_names()) == {"log_l2", "train_X"}
    assert isinstance(mixed["train_X"], RowTerm)
    for meta in [(), ("log_l2",), ("train_X",)]:
        part, _ = _loss(meta=meta)
        g2, h2, mixed2 = part.grad_and_vjp(w, 3, u)
        assert set(mixed2) == set(meta) == set(part.meta_shapes())
        np.testing.assert_array_equal(g2, g)
        np.testing.assert_array_equal(h2, h)
        for name in meta:
            got, want = mixed2[name], mixed[name]
            np.testing.assert_array_equal(getattr(got, "values", got), getattr(want, "values", want))


def test_an_unknown_meta_parameter_is_refused():
    with pytest.raises(ValueError, match="log_l2.*train_X.*'lr'"):
        _loss(meta=("lr",))
