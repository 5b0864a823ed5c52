"""InfoBuffer: push/pop laws, size near the entropy bound, errors, files."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from exactrev import BufferFileError, BufferUnderflowError, InfoBuffer
from exactrev.kernels.rans import MAX_BASE

from ..conftest import THREAD_COUNTS
from ..helpers import num_threads


@st.composite
def push_plans(draw):
    lanes = draw(st.integers(1, 40))
    depth = draw(st.integers(1, 60))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    big = draw(st.booleans())
    hi = MAX_BASE if big else 20
    bases = rng.integers(1, hi + 1, size=(depth, lanes))
    symbols = rng.integers(0, bases)
    return bases, symbols


@given(push_plans())
def test_pop_returns_pushes_in_reverse_and_empties_the_buffer(plan):
    bases, symbols = plan
    buf = InfoBuffer(bases.shape[1])
    fresh = buf.copy()
    for b, x in zip(bases, symbols):
        buf.push(x, b)
    for b, x in zip(bases[::-1], symbols[::-1]):
        np.testing.assert_array_equal(buf.pop(b), x)
    assert buf == fresh
    assert buf.content_bits == pytest.approx(0.0, abs=1e-9)


@given(plan=push_plans())
def test_save_load_round_trips(plan, tmp_path_factory):
    bases, symbols = plan
    buf = InfoBuffer(bases.shape[1])
    for b, x in zip(bases, symbols):
        buf.push(x, b)
    path = tmp_path_factory.mktemp("buf") / "b.exrb"
    buf.save(path)
    back = InfoBuffer.load(path)
    assert back == buf
    for b, x in zip(bases[::-1], symbols[::-1]):
        np.testing.assert_array_equal(back.pop(b), x)


def test_size_approaches_the_entropy_bound():
    rng = np.random.default_rng(1)
    lanes, depth, base = 500, 400, 1000
    buf = InfoBuffer(lanes)
    for _ in range(depth):
        buf.push(rng.integers(0, base, lanes), base)
    bound = lanes * depth * np.log2(base)
    assert abs(buf.content_bits - bound) / bound < 1e-3


def test_pop_beyond_what_was_pushed_raises_and_changes_nothing():
    buf = InfoBuffer(3)
    buf.push([1, 2, 3], 7)
    before = buf.copy()
    with pytest.raises(BufferUnderflowError, match="lane"):
        buf.pop([7, 7, 2 ** 16])  # lane 2 asks for 16 bits after only ~2.8 were pushed
    assert buf == before
    np.testing.assert_array_equal(buf.pop(7), [1, 2, 3])
    with pytest.raises(BufferUnderflowError):
        buf.pop(2)


@pytest.mark.parametrize("bases, symbols, match", [
    (0, 0, "bases"), (MAX_BASE + 1, 0, "bases"), (5, 5, "symbols"), (5, -1, "symbols"),
])
def test_bad_push_arguments_raise_and_change_nothing(bases, symbols, match):
    buf = InfoBuffer(2)
    before = buf.copy()
    with pytest.raises(ValueError, match=match):
        buf.push(symbols, bases)
    assert buf == before


def test_wrong_shapes_and_dtypes_are_refused():
    buf = InfoBuffer(3)
    with pytest.raises(ValueError, match="shape"):
        buf.push([1, 2], 5)
    with pytest.raises(TypeError, match="integers"):
        buf.push([0.5, 1, 2], 5)
    with pytest.raises(ValueError):
        InfoBuffer(0)


def _filled(lanes=8, depth=30):
    rng = np.random.default_rng(3)
    buf = InfoBuffer(lanes)
    for _ in range(depth):
        buf.push(rng.integers(0, 1000, lanes), 1000)
    return buf


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "b.exrb"
    _filled().save(path)
    data = path.read_bytes()
    for cut in (1, 33, len(data) // 2, len(data) - 10):
        path.write_bytes(data[:-cut])
        with pytest.raises(BufferFileError):
            InfoBuffer.load(path)


def test_altered_file_is_refused(tmp_path):
    path = tmp_path / "b.exrb"
    _filled().save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BufferFileError, match="checksum"):
        InfoBuffer.load(path)


def test_foreign_file_is_refused(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"hello world" * 10)
    with pytest.raises(BufferFileError, match="not an exactrev buffer"):
        InfoBuffer.load(path)


def test_push_pop_bits_do_not_depend_on_thread_count():
    rng = np.random.default_rng(5)
    lanes = 3000
    bases = rng.integers(1, MAX_BASE + 1, size=(20, lanes))
    symbols = rng.integers(0, bases)
    results = []
    for k in THREAD_COUNTS:
        with num_threads(k):
            buf = InfoBuffer(lanes)
            for b, x in zip(bases, symbols):
                buf.push(x, b)
            results.append(buf.to_bytes())
    assert all(r == results[0] for r in results)


def test_reserve_and_growth_keep_content():
    buf = _filled(4, 10)
    copy = buf.copy()
    buf.reserve(buf.capacity_rows + 100)
    assert buf == copy
    assert buf.nbytes_allocated > buf.nbytes_used


def test_ensure_free_always_leaves_room_although_it_does_not_scan_every_call():
    """ensure_free keeps an upper bound on counts.max() instead of scanning; after any sequence of
    pushes the words array must still have a free row above every lane's stack."""
    rng = np.random.default_rng(3)
    buf = InfoBuffer(5)
    fresh = buf.copy()
    symbols = rng.integers(0, MAX_BASE, (400, 5))
    for x in symbols:
        buf.push(x, MAX_BASE)  # 16 bits: about one word per push
        buf.ensure_free(1)
        assert buf.capacity_rows > int(buf.counts.max())
    assert int(buf.counts.max()) > 300
    for x in symbols[::-1]:
        np.testing.assert_array_equal(buf.pop(MAX_BASE), x)
    assert buf == fresh


def test_assigning_counts_rederives_the_row_bound():
    """Whoever replaces the arrays (a GPU run copying its state back, a loaded file) gets a bound that
    covers the new counts, so the next ensure_free grows the words array when it must."""
    buf = InfoBuffer(3)
    deep = _filled(3, 200)
    buf.words = deep.words.copy()[: int(deep.counts.max())]
    buf.heads, buf.counts = deep.heads.copy(), deep.counts.copy()
    buf.ensure_free(1)
    assert buf.capacity_rows >= int(buf.counts.max()) + 1


def test_a_run_reserved_for_never_grows_and_holds_at_most_1_1_times_what_it_uses():
    from exactrev import MomentumSchedule, ReversibleSGD

    opt = ReversibleSGD(np.linspace(-1, 1, 1000), MomentumSchedule.build(lr=0.1, momentum=0.5, steps=2000))
    opt.reserve_for(2000)
    reserved = opt.buffer.capacity_rows
    opt.forward(lambda w, t: w + np.sin(w))
    assert opt.buffer.capacity_rows == reserved
    assert opt.buffer.capacity_rows <= 1.1 * int(opt.buffer.counts.max())


def test_save_names_the_file_not_its_temporary(tmp_path):
    buf = _filled(3, 5)
    missing = tmp_path / "no-such-folder" / "x.buf"
    with pytest.raises(FileNotFoundError) as info:
        buf.save(missing)
    assert str(missing) in str(info.value) and ".tmp" not in str(info.value)
    assert not list(tmp_path.iterdir())


def test_a_fresh_buffer_costs_12_bytes_per_lane():
    buf = InfoBuffer(1000)
    assert buf.nbytes_allocated == 12 * 1000 == buf.nbytes_used
    assert buf.heads.dtype == np.int64 and buf.counts.dtype == np.int32 and buf.content_bits == 0


def test_a_file_of_the_older_format_is_refused_by_name(tmp_path):
    path = tmp_path / "old.buf"
    path.write_bytes(b"EXACTREV-BUFFER1" + bytes(100))
    with pytest.raises(BufferFileError, match="format 1"):
        InfoBuffer.load(path)


def test_a_content_copy_brings_the_buffer_back_after_more_pushes_and_pops():
    rng = np.random.default_rng(3)
    buf = InfoBuffer(50)
    for _ in range(40):
        buf.push(rng.integers(0, 1000, 50), np.full(50, 1000))
    kept = buf.content_copy()
    assert kept[2].shape[0] == int(buf.counts.max())   # the used rows only
    expected = [buf.pop(np.full(50, 1000)) for _ in range(5)]
    for _ in range(30):   # pops below the copy's top, then pushes over those rows
        buf.push(rng.integers(0, 7, 50), np.full(50, 7))
    buf.restore_content(kept)
    assert all(np.array_equal(buf.pop(np.full(50, 1000)), e) for e in expected)
    with pytest.raises(ValueError, match="holds 3 lanes, this buffer has 50"):
        buf.restore_content((kept[0][:3], kept[1], kept[2]))
