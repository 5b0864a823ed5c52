"""Progress bars for long runs (tqdm), off unless asked for."""

from tqdm.auto import tqdm


def progress_range(n, enabled=False, desc=None):
    """range(n), wrapped in a tqdm bar when ``enabled``."""
    if enabled:
        return tqdm(range(n), desc=desc, leave=False)
    return range(n)
