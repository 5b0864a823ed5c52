"""CUDA kernels against the CPU kernels, bit for bit (on Numba's simulator unless EXACTREV_REAL_GPU=1)."""

import os
import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pytest
from numba import cuda

from exactrev import FixedPointRangeError, InfoBuffer, MomentumSchedule, ReversibleSGD, StepError
from exactrev.hyper.data import Split
from exactrev.hyper.api import hypergradient
from exactrev.hyper.meta import MetaParams, logit
from exactrev.hyper.losses import MLPTrainingLoss, MLPValidationLoss
from exactrev.model.mlp import MLP
from exactrev.model.mlp_cuda import CudaMLP
from exactrev.optim.sgd_cuda import CudaReversibleSGD


def _setup(n=40, steps=6, groups=3, seed=0):
    rng = np.random.default_rng(seed)
    mom = np.array([[Fraction(int(rng.integers(1, 60000)), 65536) for _ in range(groups)]
                    for _ in range(steps)], dtype=object)
    sched = MomentumSchedule.build(rng.uniform(0.05, 0.5, (steps, groups)), mom)
    w0, v0 = rng.normal(size=n), rng.normal(size=n)
    group = rng.integers(0, groups, n)
    grads = [rng.normal(size=n) for _ in range(steps)]
    return sched, w0, v0, group, grads


def test_gpu_steps_equal_cpu_steps_bit_for_bit_and_reverse_exactly(tmp_path):
    sched, w0, v0, group, grads = _setup()
    cpu = ReversibleSGD(w0, sched, v0=v0, group=group)
    gpu = CudaReversibleSGD(w0, sched, v0=v0, group=group)
    for g in grads:
        cpu.step(g)
        gpu.step(cuda.to_device(g))
    gpu.check()
    np.testing.assert_array_equal(gpu.w.copy_to_host(), cpu.w)
    np.testing.assert_array_equal(gpu.v.copy_to_host(), cpu.v)
    host_buf = gpu.buffer_to_host()
    assert host_buf == cpu.buffer
    # the GPU's buffer is saved, loaded and popped on the CPU: a CPU reversal finishes the job
    host_buf.save(tmp_path / "gpu.exrb")
    loaded = InfoBuffer.load(tmp_path / "gpu.exrb")
    cpu2 = ReversibleSGD(w0, sched, v0=v0, group=group)
    cpu2.w, cpu2.v, cpu2.buffer, cpu2.t = gpu.w.copy_to_host(), gpu.v.copy_to_host(), loaded, len(grads)
    for t in range(len(grads) - 1, -1, -1):
        cpu2.unstep_weights()
        cpu2.unstep_velocity(grads[t])
    np.testing.assert_array_equal(cpu2.w, ReversibleSGD(w0, sched).w)
    # and the GPU reverses itself
    for t in range(len(grads) - 1, -1, -1):
        gpu.unstep_weights()
        gpu.unstep_velocity(cuda.to_device(grads[t]))
    gpu.check()
    assert gpu.buffer_restored()
    np.testing.assert_array_equal(gpu.w.copy_to_host(), ReversibleSGD(w0, sched).w)


def test_gpu_error_leaves_state_unchanged_and_names_step_and_weight():
    sched, w0, v0, group, grads = _setup(n=10)
    gpu = CudaReversibleSGD(w0, sched, v0=v0, group=group)
    gpu.step(cuda.to_device(grads[0]))
    before = (gpu.w.copy_to_host(), gpu.v.copy_to_host(), gpu.heads.copy_to_host())
    bad = grads[1].copy()
    bad[7] = np.nan
    gpu.step(cuda.to_device(bad))
    gpu.step(cuda.to_device(grads[2]))   # ignored: the run stopped at the failing step
    with pytest.raises(StepError, match=r"forward step 1, weight 7: gradient is NaN"):
        gpu.check()
    assert gpu.t == 1
    for a, b in zip(before, (gpu.w.copy_to_host(), gpu.v.copy_to_host(), gpu.heads.copy_to_host())):
        np.testing.assert_array_equal(a, b)


def test_gpu_reverse_velocity_failure_moves_weights_back():
    sched, w0, v0, group, grads = _setup(n=10)
    gpu = CudaReversibleSGD(w0, sched, v0=v0, group=group)
    gpu.step(cuda.to_device(grads[0]))
    w_before = gpu.w.copy_to_host()
    gpu.unstep_weights()
    bad = grads[0].copy()
    bad[3] = np.inf
    gpu.unstep_velocity(cuda.to_device(bad))
    with pytest.raises(StepError, match=r"reverse step 0, weight 3"):
        gpu.check()
    np.testing.assert_array_equal(gpu.w.copy_to_host(), w_before)
    assert gpu.t == 1


def test_gpu_overflow_is_reported_as_a_range_error():
    sched = MomentumSchedule.build(lr=1.0, momentum=0.5, steps=3)
    gpu = CudaReversibleSGD(np.array([0.0, 2000.0]), sched)
    gpu.step(cuda.to_device(np.array([0.0, -1e4])))
    with pytest.raises(FixedPointRangeError, match="weight 1"):
        gpu.check()


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_gpu_mlp_matches_the_cpu_mlp(act):
    rng = np.random.default_rng(3)
    net = MLP((5, 4, 3), act)
    p, vec = rng.normal(size=net.n_params) * 0.5, rng.normal(size=net.n_params)
    X, y = rng.normal(size=(6, 5)), rng.integers(0, 3, 6)
    l2 = rng.uniform(0, 0.1, net.n_params)
    cpu = net.grad_hvp(p, X, y, vec, l2)
    gpu = CudaMLP(net, 6).grad_hvp_host(p, X, y, vec, l2)
    assert gpu[0] == pytest.approx(cpu[0], rel=1e-12)
    for a, b in zip(gpu[1:], cpu[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_a_whole_hypergradient_on_the_simulated_device_matches_the_cpu():
    rng = np.random.default_rng(1)
    net = MLP((4, 5, 3))
    train = Split(rng.normal(size=(12, 4)), rng.integers(0, 3, 12))
    valid = Split(rng.normal(size=(8, 4)), rng.integers(0, 3, 8))
    T = 4
    meta = MetaParams(np.log(rng.uniform(0.1, 0.5, (T, net.n_types))),
                      np.full((T, net.n_types), logit(0.9)), np.log(np.full(net.n_types, 0.3)))
    noise = net.init_noise(rng)
    tl = MLPTrainingLoss(net, train, 4, seed=2, log_l2=np.log(np.full(net.n_params, 1e-3)))
    vl = MLPValidationLoss(net, valid)
    cpu = hypergradient(meta, tl, vl, noise, net.weight_types())
    gpu = hypergradient(meta, tl, vl, noise, net.weight_types(), device="cuda")
    assert gpu.restored
    assert gpu.loss == pytest.approx(cpu.loss, rel=1e-10)
    for name in ("log_lr", "logit_momentum", "log_init_scale", "log_l2", "train_X"):
        np.testing.assert_allclose(gpu.grads[name], cpu.grads[name], rtol=1e-8, atol=1e-14, err_msg=name)


def test_bad_device_is_refused():
    with pytest.raises(ValueError, match="device"):
        hypergradient(MetaParams.constant(2, 1), None, None, None, None, device="tpu")


PTX_SCRIPT = textwrap.dedent("""
    from numba import types as nt
    from numba.cuda import compile_ptx
    from exactrev.kernels import cuda as K
    i64, f64, u16, i8 = nt.int64, nt.float64, nt.uint16, nt.int8
    sig = (i64[:], i64[:], i64[:], i64[:], u16[:, :], i64, i64[:], i64[:, :, :], i64[:, :, :],
           f64[:, :], f64[:, :], f64[:], i64, nt.boolean, i8[:], i64[:])
    ptx, _ = compile_ptx(K.momentum_forward_kernel.py_func, sig, cc=(9, 0))
    sig = (i64[:], i64[:], i64[:], u16[:, :], i64, i64[:], i64[:, :, :], i64[:, :, :],
           f64[:, :], f64[:], i64, nt.boolean, i8[:], i64[:])
    ptx2, _ = compile_ptx(K.velocity_back_kernel.py_func, sig, cc=(9, 0))
    sig = (i64[:], i64[:], u16[:, :], i64[:], i64[:])
    ptx3, _ = compile_ptx(K.push_kernel.py_func, sig, cc=(9, 0))
    print("PTX", len(ptx), len(ptx2), len(ptx3))
""")


def test_kernels_compile_to_ptx_for_a_real_gpu():
    """Without a GPU, check that the device code compiles for sm_90 (needs the CUDA toolkit wheels)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", PTX_SCRIPT], capture_output=True, text=True, env=env,
                          timeout=600)
    if "PTX" not in proc.stdout and ("nvvm" in proc.stderr.lower() or "nvrtc" in proc.stderr.lower()
                                     or "libNVVM" in proc.stderr or "driver" in proc.stderr.lower()):
        pytest.skip("CUDA toolkit libraries (NVVM) not installed: pip install 'numba-cuda[cu12]'")
    assert "PTX" in proc.stdout, proc.stderr[-2000:]


def test_gpu_benchmark_runs_on_the_simulator(capsys):
    from exactrev.faces.bench_gpu import gpu_report

    figures = gpu_report(n=64, steps=2, mlp_steps=(), match_weights=50)
    assert figures["reversible"] > 0 and figures["float"] > 0 and figures["bandwidth"] > 0
    assert figures["push_ns"] > 0 and figures["pop_ns"] > 0
    assert figures["match"] == {"w": True, "v": True, "buffer": True, "restored": True}
    assert "reversible / float64 time" in capsys.readouterr().out


def test_a_gpu_run_without_a_device_says_so_in_one_line(monkeypatch):
    from exactrev.kernels.cuda_device import NoCudaDeviceError

    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(NoCudaDeviceError, match="no CUDA device") as info:
        CudaReversibleSGD(np.zeros(3), MomentumSchedule.build(lr=0.1, momentum=0.9, steps=2))
    assert "\n" not in str(info.value)
    with pytest.raises(NoCudaDeviceError):
        hypergradient(MetaParams.constant(2, 1), None, None, None, None, device="cuda")
