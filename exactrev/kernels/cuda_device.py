"""Whether a CUDA device is there, asked once before any GPU work, with a one-line answer if not."""


class NoCudaDeviceError(RuntimeError):
    """No CUDA device (or driver) was found for a GPU run."""


def require_cuda() -> None:
    """Return if numba.cuda has a device (or its simulator, NUMBA_ENABLE_CUDASIM=1); else raise
    NoCudaDeviceError saying what to do."""
    from numba import cuda

    if not cuda.is_available():
        raise NoCudaDeviceError(
            "no CUDA device was found (numba.cuda.is_available() is False): run on a machine with an "
            "NVIDIA GPU and its driver, or set NUMBA_ENABLE_CUDASIM=1 to simulate one on the CPU (slowly)")
