"""Data-parallel exact reversal under mpiexec (1, 2 and 3 ranks): the same bits for every rank count,
failures raised alike on every rank with nothing written, a sharded run saved and reversed later."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mpi4py")
JOB = os.path.join(os.path.dirname(__file__), "mpi_job.py")
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install 'exactrev[mpi]')")


def mpirun(n, mode, out, timeout=300):
    proc = subprocess.run([MPIEXEC, "-n", str(n), sys.executable, JOB, mode, str(out)], capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def by_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mpi")
    out = {}
    for n in (1, 2, 3):
        mpirun(n, "hypergradient", folder / f"p{n}.npz")
        with np.load(folder / f"p{n}.npz") as f:
            out[n] = {k: f[k] for k in f.files}
    return out


def test_hypergradients_and_final_weights_are_the_same_bits_for_1_2_and_3_ranks(by_ranks):
    one = by_ranks[1]
    assert bool(one["restored"])
    for n in (2, 3):
        assert bool(by_ranks[n]["restored"])
        for name in one:
            if name != "buffer_bytes":
                np.testing.assert_array_equal(by_ranks[n][name], one[name], err_msg=f"{name}, {n} ranks")


def test_each_rank_keeps_about_its_share_of_the_buffer(by_ranks):
    whole = int(by_ranks[1]["buffer_bytes"])
    for n in (2, 3):
        assert int(by_ranks[n]["buffer_bytes"]) <= whole / n * 1.1


def test_a_failure_on_one_rank_is_the_same_error_on_every_rank_and_nothing_is_written(tmp_path):
    out = tmp_path / "failures.json"
    mpirun(2, "failures", out)
    report = json.loads(out.read_text())
    for case, kind, rank in (("nan", "StepError", 1), ("huge", "FixedPointRangeError", 0),
                             ("bad_batch", "FixedPointRangeError", 1), ("mismatch", None, 1)):
        raised = report[case]
        assert raised[0] == raised[1] and raised[0] is not None, case   # the same on both ranks
        name, message = raised[0]
        if kind:
            assert name == kind, case
        assert message.startswith(f"rank {rank} of 2"), message
        assert "step" in message and ("weight" in message or "rows" in message), message
    assert report["nan_unchanged"] == [True, True]
    assert "weight 909" in report["nan"][0][1]   # the global index of the last weight


def test_a_sharded_run_saved_after_training_is_reversed_later_on_the_same_ranks(tmp_path):
    out = str(tmp_path / "run")
    mpirun(2, "save", out)
    assert sorted(os.listdir(out + ".run")) == ["rank0of2.npz", "rank1of2.npz"]
    mpirun(2, "load", out)
    assert json.loads(open(out).read())["restored"] == [True, True]
    mpirun(3, "load_wrong_ranks", out)
    raised = json.loads(open(out).read())["load"]
    assert all(r == raised[0] for r in raised) and raised[0][0] == "FileNotFoundError"
    assert "another number of ranks" in raised[0][1]


def test_hyperopt_under_mpiexec_writes_what_one_process_writes(tmp_path):
    args = ["hyperopt", "--meta-iters", "2", "--steps", "6", "--batch", "50", "--hidden", "8", "--no-progress"]
    cli = [sys.executable, "-m", "exactrev.faces.cli"]
    subprocess.run(cli + args + ["--out", str(tmp_path / "one")], check=True, capture_output=True, timeout=300)
    proc = subprocess.run([MPIEXEC, "-n", "2", *cli, *args, "--out", str(tmp_path / "two")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("wrote ") == 3    # rank 0 alone writes and reports
    two = json.loads((tmp_path / "two" / "hyperparameters.json").read_text())
    one = json.loads((tmp_path / "one" / "hyperparameters.json").read_text())
    assert two["run"]["mpi_ranks"] == 2
    # the data-parallel loss sums fixed-point chunks, so its floats differ from one process's loss in
    # the last bits; the learned schedules agree closely
    np.testing.assert_allclose([c["valid_loss"] for c in two["meta_curve"]],
                               [c["valid_loss"] for c in one["meta_curve"]],
                               rtol=1e-6)
