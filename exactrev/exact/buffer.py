"""The information buffer: a per-weight LIFO store of remainders, entropy-coded with streaming rANS.

Pushing a symbol uniform over M costs log2(M) bits (within 4.4e-5 bits, see ``kernels/rans.py``) and
O(1) time per lane, whatever the buffer already holds. Lane i is a head ``heads[i]`` (int64) in
[2**47, 2**63) plus ``counts[i]`` (int32) 16-bit words ``words[:counts[i], i]``; a fresh lane is
(2**47, 0), so the fixed cost is 12 bytes per lane. The exact multiply pops before it pushes, and on an
empty stack its pop may borrow the virtual zero word under every stack, which its push then emits
again (the operation never ends below the stack's bottom); user pops may not borrow ("more popped than
pushed").

Size: ``size_bits = 16 * sum(counts) + sum(log2(heads))``; ``content_bits`` is that minus a fresh
buffer's, i.e. the information pushed so far.
"""

import contextlib
import hashlib
import json
import os
import struct

import numpy as np

from ..kernels.buffer_ops import pop_kernel, push_kernel
from ..kernels.threads import for_lanes
from ..kernels.rans import MAX_BASE, STATE_LOWER, WORD_BITS

_MAGIC = b"EXACTREV-BUFFER2"
_OLD_MAGIC = b"EXACTREV-BUFFER1"
_DIGEST_BYTES = 32
_HEAD_BITS = 47  # log2(STATE_LOWER): bits a fresh head holds
_SLACK_ROWS = 16  # free rows added when the buffer must grow anyway


class BufferUnderflowError(RuntimeError):
    """More was popped from the information buffer than had been pushed."""


class BufferFileError(ValueError):
    """A buffer file is truncated, altered or not a buffer file."""


class BufferMismatchError(RuntimeError):
    """After reversal the buffer is not back to the state it had before the forward run."""


class ReversalUnderflowError(BufferMismatchError, BufferUnderflowError):
    """A reverse step popped bits that no forward step pushed: the gradient (or the state) differs from
    the forward run's, or the buffer is not the one the run pushed into. Both a mismatch and an
    underflow, so either ``except`` clause catches it."""


def _as_lane_array(x, n, name, dtype=np.int64):
    arr = np.asarray(x)
    if arr.ndim == 0:
        arr = np.full(n, arr, dtype=dtype)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def content_bits(heads, counts) -> np.ndarray:
    """Bits each lane holds beyond a fresh lane: 16 counts + log2(heads) - 47."""
    return WORD_BITS * counts.astype(np.float64) + np.log2(heads.astype(np.float64)) - _HEAD_BITS


def _check_bases(bases):
    bad = (bases < 1) | (bases > MAX_BASE)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"bases[{i}] = {bases[i]} outside [1, {MAX_BASE}]")


class InfoBuffer:
    """Per-lane entropy-coded stacks; see the module docstring for the layout and the size formula."""

    floor = 0
    """Words below which no operation may end a lane: the kernels' ``floor`` argument."""

    def __init__(self, n_lanes: int):
        if int(n_lanes) < 1:
            raise ValueError(f"n_lanes must be >= 1, got {n_lanes}")
        self.n_lanes = int(n_lanes)
        self.heads = np.full(self.n_lanes, STATE_LOWER, np.int64)
        self.counts = np.zeros(self.n_lanes, np.int32)
        self.words = np.zeros((0, self.n_lanes), np.uint16)

    @property
    def counts(self) -> np.ndarray:
        """int32[N]: words on each lane's stack. Assigning it re-derives the row bound."""
        return self._counts

    @counts.setter
    def counts(self, value) -> None:
        self._counts = value
        self._row_bound = int(value.max()) if value.size else 0

    def lane_flags(self) -> np.ndarray:
        """A reusable all-zero int8[N] array for a kernel's per-lane error flags. Whoever sets flags in
        it must zero it again before returning (saves an allocation per step)."""
        flags = getattr(self, "_flags", None)
        if flags is None:
            flags = self._flags = np.zeros(self.n_lanes, np.int8)
        return flags

    # -- capacity -------------------------------------------------------------------------------
    @property
    def capacity_rows(self) -> int:
        return self.words.shape[0]

    def reserve(self, rows: int) -> None:
        """Make room for at least ``rows`` words per lane (use it to preallocate a known run)."""
        if rows > self.capacity_rows:
            grown = np.zeros((int(rows), self.n_lanes), np.uint16)
            grown[: self.capacity_rows] = self.words
            self.words = grown

    def ensure_free(self, rows: int = 1) -> None:
        """Guarantee ``rows`` free words on every lane for the operation that follows (which may
        push up to ``rows`` words per lane), growing geometrically (amortised O(1)).

        A cached upper bound on ``counts.max()`` grows by ``rows`` per call and is re-derived only
        when it reaches the capacity, so a step does not scan every lane; the buffer grows only when
        the true maximum leaves no room, so a run the caller reserved for never grows. Code that
        pushes through the kernels directly must call this first (it must anyway, to have room).
        """
        if self._row_bound + rows > self.capacity_rows:
            self._row_bound = int(self.counts.max())
            if self._row_bound + rows > self.capacity_rows:
                self.reserve(max(self._row_bound + rows + _SLACK_ROWS,
                                 self.capacity_rows + self.capacity_rows // 2 + 8))
        self._row_bound += rows

    # -- push / pop -----------------------------------------------------------------------------
    def push(self, symbols, bases) -> None:
        """Push symbols[i], uniform over bases[i] (1 <= base <= 2**16), onto lane i."""
        bases = _as_lane_array(bases, self.n_lanes, "bases")
        symbols = _as_lane_array(symbols, self.n_lanes, "symbols")
        _check_bases(bases)
        bad = (symbols < 0) | (symbols >= bases)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"symbols[{i}] = {symbols[i]} outside [0, {bases[i]})")
        self.ensure_free(1)
        for_lanes(push_kernel, self.n_lanes)(self.heads, self.counts, self.words, symbols, bases)

    def pop(self, bases) -> np.ndarray:
        """Pop one symbol per lane, uniform over bases[i]; raises BufferUnderflowError, state unchanged."""
        bases = _as_lane_array(bases, self.n_lanes, "bases")
        _check_bases(bases)
        out = np.zeros(self.n_lanes, np.int64)
        errs = np.zeros(self.n_lanes, np.int8)
        kernel = for_lanes(pop_kernel, self.n_lanes)
        kernel(self.heads, self.counts, self.words, bases, self.floor, out, False, errs)
        if errs.any():
            i = int(np.argmax(errs))
            raise BufferUnderflowError(
                f"lane {i}: popping base {bases[i]} needs more bits than were pushed "
                f"({self.content_bits_per_lane()[i]:.2f} bits of content left)")
        kernel(self.heads, self.counts, self.words, bases, self.floor, out, True, errs)
        return out

    # -- size -----------------------------------------------------------------------------------
    def content_bits_per_lane(self) -> np.ndarray:
        """Information held by each lane beyond a fresh lane's, in bits (float64[N])."""
        return content_bits(self.heads, self.counts)

    @property
    def content_bits(self) -> float:
        """Information pushed so far, summed over lanes, in bits."""
        return float(self.content_bits_per_lane().sum())

    @property
    def size_bits(self) -> float:
        """Total size in bits: 16 bits per stored word plus log2 of every head."""
        return float(WORD_BITS * self.counts.sum(dtype=np.int64)
                     + np.log2(self.heads.astype(np.float64)).sum())

    @property
    def nbytes_used(self) -> int:
        """Bytes that the content needs: the stored words plus each lane's head and count."""
        return int(2 * self.counts.sum(dtype=np.int64) + self.heads.nbytes + self.counts.nbytes)

    @property
    def nbytes_allocated(self) -> int:
        return int(self.words.nbytes + self.heads.nbytes + self.counts.nbytes)

    # -- state ----------------------------------------------------------------------------------
    def snapshot(self):
        """(heads, counts) copies: enough to tell whether a reversal brought the buffer back."""
        return self.heads.copy(), self.counts.copy()

    def content_copy(self):
        """Copies of what the stacks hold (heads, counts and the used rows of words), to go back to
        with ``restore_content``: a checkpoint of the buffer, about the size of its content."""
        rows = int(self.counts.max()) if self.n_lanes else 0
        return self.heads.copy(), self.counts.copy(), self.words[:rows].copy()

    def restore_content(self, content) -> None:
        """Put back what ``content_copy`` returned (the rows above it are left as they are: unused)."""
        heads, counts, words = content
        lanes = (self.n_lanes,)
        if heads.shape != lanes or counts.shape != lanes or words.shape[1:] != lanes:
            raise ValueError(f"the content holds {heads.shape[0]} lanes, this buffer has {self.n_lanes}")
        self.reserve(words.shape[0])
        self.heads[:] = heads
        self.words[: words.shape[0]] = words
        self.counts = counts.copy()

    def matches(self, snapshot) -> bool:
        heads, counts = snapshot
        return bool(np.array_equal(heads, self.heads) and np.array_equal(counts, self.counts))

    def first_mismatch(self, snapshot) -> int:
        heads, counts = snapshot
        diff = (heads != self.heads) | (counts != self.counts)
        return int(np.argmax(diff)) if diff.any() else -1

    def _used_words(self) -> np.ndarray:
        rows = int(self.counts.max())
        used = self.words[:rows].copy()
        used[np.arange(rows)[:, None] >= self.counts[None, :]] = 0
        return used

    def copy(self) -> "InfoBuffer":
        other = InfoBuffer.__new__(InfoBuffer)
        other.n_lanes = self.n_lanes
        other.heads, other.counts, other.words = self.heads.copy(), self.counts.copy(), self.words.copy()
        return other

    def __eq__(self, other) -> bool:
        if not isinstance(other, InfoBuffer):
            return NotImplemented
        return (self.n_lanes == other.n_lanes and self.matches(other.snapshot())
                and np.array_equal(self._used_words(), other._used_words()))

    __hash__ = None

    # -- files ----------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Serialise: magic, JSON header, little-endian arrays, then the SHA-256 of all of it."""
        used = self._used_words()
        header = json.dumps({"lanes": self.n_lanes, "rows": int(used.shape[0])}).encode()
        body = b"".join([_MAGIC, struct.pack("<I", len(header)), header,
                         self.heads.astype("<i8").tobytes(), self.counts.astype("<i4").tobytes(),
                         used.astype("<u2").tobytes()])
        return body + hashlib.sha256(body).digest()

    @classmethod
    def from_bytes(cls, data: bytes, source="<bytes>") -> "InfoBuffer":
        """Inverse of :meth:`to_bytes`; refuses truncated, altered or foreign data (BufferFileError)."""
        fixed = len(_MAGIC) + 4 + _DIGEST_BYTES
        if data.startswith(_OLD_MAGIC):
            raise BufferFileError(f"{source}: a buffer file of format 1 (seed words, int64 counts); this "
                                  f"exactrev reads format 2: rerun the forward pass to write one")
        if len(data) < fixed or not data.startswith(_MAGIC):
            raise BufferFileError(f"{source}: not an exactrev buffer file (bad magic or too short)")
        body, digest = data[:-_DIGEST_BYTES], data[-_DIGEST_BYTES:]
        if hashlib.sha256(body).digest() != digest:
            raise BufferFileError(f"{source}: checksum mismatch: the file is truncated or altered")
        (hlen,) = struct.unpack("<I", body[len(_MAGIC):len(_MAGIC) + 4])
        start = len(_MAGIC) + 4
        try:
            header = json.loads(body[start:start + hlen])
            n, rows = int(header["lanes"]), int(header["rows"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BufferFileError(f"{source}: unreadable header ({exc})") from None
        payload = memoryview(body)[start + hlen:]
        if n < 1 or rows < 0 or len(payload) != 12 * n + 2 * rows * n:
            raise BufferFileError(f"{source}: header and payload sizes disagree")
        buf = cls(n)
        buf.heads = np.frombuffer(payload[: 8 * n], "<i8").astype(np.int64)
        buf.counts = np.frombuffer(payload[8 * n: 12 * n], "<i4").astype(np.int32)
        words = np.frombuffer(payload[12 * n:], "<u2").astype(np.uint16).reshape(rows, n)
        if (buf.heads < STATE_LOWER).any() or (buf.counts < 0).any() or (buf.counts > rows).any():
            raise BufferFileError(f"{source}: heads or counts out of range")
        buf.words = np.zeros((rows, n), np.uint16)
        buf.words[:rows] = words
        return buf

    def save(self, path) -> None:
        """Write the buffer to ``path`` atomically (a temporary file, then a rename)."""
        path = os.fspath(path)
        tmp = f"{path}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(self.to_bytes())
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise type(exc)(exc.errno, f"cannot write the buffer file ({exc.strerror})", path) from None

    @classmethod
    def load(cls, path) -> "InfoBuffer":
        with open(path, "rb") as fh:
            return cls.from_bytes(fh.read(), source=os.fspath(path))
