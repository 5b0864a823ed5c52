"""Bundled and local datasets; deterministic mini-batches."""

import gzip
import struct

import numpy as np
import pytest

from exactrev.hyper.data import batch_indices, load_digits, load_mnist


def test_digits_ship_with_the_package_and_split_disjointly():
    d = load_digits(n_train=1000, n_valid=400)
    assert d.n_features == 64 and d.n_classes == 10
    assert (len(d.train), len(d.valid), len(d.test)) == (1000, 400, 397)
    assert 0.0 <= d.train.X.min() and d.train.X.max() <= 1.0
    with pytest.raises(ValueError, match="no test data"):
        load_digits(n_train=1500, n_valid=400)


def test_batches_are_a_function_of_seed_meta_iteration_and_step():
    a = batch_indices(1000, 200, 0, 3, 17)
    np.testing.assert_array_equal(a, batch_indices(1000, 200, 0, 3, 17))
    assert len(set(a.tolist())) == 200
    assert not np.array_equal(a, batch_indices(1000, 200, 0, 4, 17))
    epoch = np.concatenate([batch_indices(1000, 200, 0, 0, t) for t in range(5)])
    assert sorted(epoch.tolist()) == list(range(1000))
    with pytest.raises(ValueError):
        batch_indices(10, 20, 0, 0, 0)


def _write_idx(path, arr, gz):
    header = b"\x00\x00\x08" + bytes([arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_local_idx_files(tmp_path, gz):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", rng.integers(0, 256, (30, 28, 28)), gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", rng.integers(0, 10, 30), gz)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", rng.integers(0, 256, (10, 28, 28)), gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", rng.integers(0, 10, 10), gz)
    d = load_mnist(tmp_path, n_train=20, n_valid=10)
    assert d.n_features == 784 and len(d.test) == 10
    assert d.train.X.max() <= 1.0


def test_mnist_from_npz_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "m.npz", x_train=rng.integers(0, 256, (30, 28, 28)), y_train=rng.integers(0, 10, 30),
             x_test=rng.integers(0, 256, (10, 28, 28)), y_test=rng.integers(0, 10, 10))
    assert len(load_mnist(tmp_path / "m.npz", n_train=20, n_valid=10).train) == 20
    with pytest.raises(FileNotFoundError, match="train-images"):
        load_mnist(tmp_path)
    (tmp_path / "bad").mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (tmp_path / "bad" / name).write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09abc")
    with pytest.raises(ValueError, match="IDX header"):
        load_mnist(tmp_path / "bad")
