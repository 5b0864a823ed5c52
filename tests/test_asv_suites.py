"""The asv suites in benchmarks/ import, and a suite that needs JAX skips itself where JAX is missing."""

import importlib
import pathlib

import pytest

SUITES = sorted(p.stem for p in (pathlib.Path(__file__).resolve().parents[1] / "benchmarks").glob("bench_*.py"))


@pytest.mark.parametrize("name", SUITES)
def test_every_suite_imports_and_names_its_measurements(name):
    module = importlib.import_module(f"benchmarks.{name}")
    classes = [c for c in vars(module).values() if isinstance(c, type) and c.__module__ == module.__name__]
    assert any(attr.startswith(("time_", "track_")) for c in classes for attr in vars(c))


def test_the_jax_suites_skip_without_jax(monkeypatch):
    from benchmarks import bench_peers

    monkeypatch.setattr(bench_peers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(NotImplementedError):
        bench_peers.JaxAdapter().setup()
    with pytest.raises(NotImplementedError):
        bench_peers.AgainstJax().setup(100, "store")
