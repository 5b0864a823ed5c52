"""Progress bars for long runs (tqdm), off unless asked for."""

from tqdm.auto import tqdm


def progress_range(n, enabled=False, desc=None, reverse=False):
    """range(n) (or n-1 down to 0 with ``reverse``), wrapped in a tqdm bar when ``enabled``."""
    steps = range(n - 1, -1, -1) if reverse else range(n)
    if enabled:
        return tqdm(steps, desc=desc, leave=False)
    return steps
