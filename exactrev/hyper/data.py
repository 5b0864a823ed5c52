"""Datasets that need no download, and mini-batches that are a pure function of (seed, meta-iteration, step).

``load_digits`` uses the UCI handwritten digits that scikit-learn ships (1797 images of 8x8 pixels,
10 classes), scaled to [0, 1]. ``load_mnist`` reads MNIST from local files a user already has (the four
IDX files, gzipped or not, or an ``.npz`` with x_train/y_train/x_test/y_test).
"""

import functools
import gzip
import os
import struct
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    X: np.ndarray   # float64[n, features]
    y: np.ndarray   # int64[n]

    def __len__(self):
        return self.y.shape[0]


@dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits of one labelled dataset."""

    name: str
    train: Split
    valid: Split
    test: Split

    @property
    def n_features(self) -> int:
        return self.train.X.shape[1]

    @property
    def n_classes(self) -> int:
        return int(max(self.train.y.max(), self.valid.y.max(), self.test.y.max())) + 1


def _split(name, X, y, n_train, n_valid, seed):
    if n_train + n_valid >= len(y):
        raise ValueError(f"{name}: {n_train} train + {n_valid} validation leaves no test data "
                         f"(of {len(y)})")
    order = np.random.default_rng(seed).permutation(len(y))
    X, y = np.ascontiguousarray(X[order], np.float64), np.ascontiguousarray(y[order], np.int64)
    a, b = n_train, n_train + n_valid
    return Dataset(name, Split(X[:a], y[:a]), Split(X[a:b], y[a:b]), Split(X[b:], y[b:]))


def load_digits(n_train=1000, n_valid=400, seed=0) -> Dataset:
    """scikit-learn's bundled UCI digits, pixels scaled to [0, 1]; the rest of the 1797 is the test set."""
    from sklearn.datasets import load_digits as _sk_digits

    raw = _sk_digits()
    return _split("digits", raw.data / 16.0, raw.target, n_train, n_valid, seed)


def _read_idx(path):
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise ValueError(f"{path}: not an IDX file")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: IDX header says {dims}, file holds {arr.size} values")
    return arr.reshape(dims)


def load_mnist(path, n_train=10000, n_valid=10000, seed=0) -> Dataset:
    """MNIST from a folder of the four IDX files (optionally .gz) or from an .npz; pixels in [0, 1]."""
    path = os.fspath(path)
    if path.endswith(".npz"):
        with np.load(path) as f:
            X = np.concatenate([f["x_train"], f["x_test"]])
            y = np.concatenate([f["y_train"], f["y_test"]])
    else:
        def find(stem):
            for name in (stem, stem + ".gz"):
                full = os.path.join(path, name)
                if os.path.exists(full):
                    return full
            raise FileNotFoundError(f"{path}: missing {stem}[.gz]")
        X = np.concatenate([_read_idx(find("train-images-idx3-ubyte")),
                            _read_idx(find("t10k-images-idx3-ubyte"))])
        y = np.concatenate([_read_idx(find("train-labels-idx1-ubyte")),
                            _read_idx(find("t10k-labels-idx1-ubyte"))])
    X = X.reshape(X.shape[0], -1) / 255.0
    return _split("mnist", X, y, n_train, n_valid, seed)


def batch_indices(n, batch_size, seed, meta_iter, step) -> np.ndarray:
    """Indices of the mini-batch for (seed, meta_iter, step): the same call always gives the same batch.

    Steps walk through a per-(seed, meta_iter) permutation of [0, n), reshuffled every epoch.
    """
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must lie in [1, {n}], got {batch_size}")
    per_epoch = n // batch_size
    epoch, pos = divmod(step, per_epoch)
    return _epoch_order(n, seed, meta_iter, epoch)[pos * batch_size:(pos + 1) * batch_size]


@functools.lru_cache(maxsize=256)
def _epoch_order(n, seed, meta_iter, epoch):
    """The permutation of epoch ``epoch`` (read-only: shared by every call that asks for it). A training
    run asks for each twice, forward and in the reverse sweep; drawing it costs about 40 us."""
    perm = np.random.default_rng([seed, meta_iter, epoch]).permutation(n)
    perm.setflags(write=False)
    return perm
