"""The kernels' on-disk cache is stamped with every kernel source, so a change to any (a lane function
inlined from another file included) recompiles them all instead of loading stale machine code."""

import shutil

import numba as nb
from numba.core import caching

from exactrev.kernels import cache
from exactrev.kernels.buffer_ops import push_kernel
from exactrev.kernels.momentum import momentum_kick_kernel
from exactrev.kernels.threads import serial_build
from exactrev.model.mlp_kernels import mlp_pass, serial_mlp_pass


def test_every_exactrev_kernel_is_stamped_with_all_kernel_sources():
    for kernel in (push_kernel, momentum_kick_kernel, mlp_pass, serial_build(momentum_kick_kernel),
                   serial_mlp_pass()):
        locator = kernel._cache._impl.locator
        assert isinstance(locator, cache.LOCATORS)
        assert locator.get_source_stamp() == cache.KERNEL_SOURCES_DIGEST


def test_functions_outside_exactrev_keep_numbas_own_locators():
    @nb.njit(cache=True)
    def outside(x):
        return x + 1

    locator = outside._cache._impl.locator
    assert not isinstance(locator, cache.LOCATORS) and isinstance(locator, caching._CacheLocator)


def test_the_digest_changes_with_any_kernel_source_and_only_with_them(tmp_path):
    shutil.copytree(cache.PACKAGE_DIR, tmp_path / "exactrev", ignore=shutil.ignore_patterns("__pycache__"))
    root = str(tmp_path / "exactrev")
    before = cache.kernel_sources_digest(root)
    assert before == cache.KERNEL_SOURCES_DIGEST
    (tmp_path / "exactrev" / "faces" / "cli.py").write_text("# not a kernel source\n")
    assert cache.kernel_sources_digest(root) == before
    lanes = tmp_path / "exactrev" / "kernels" / "lanes.py"
    lanes.write_text(lanes.read_text() + "\n# an edit to the lanes that other files inline\n")
    assert cache.kernel_sources_digest(root) != before


def test_installing_twice_keeps_one_copy_in_front():
    cache.install_locators()
    cache.install_locators()
    classes = caching.CacheImpl._locator_classes
    assert classes[:3] == list(cache.LOCATORS) and classes.count(cache.InTreeLocator) == 1
