"""asv benchmark suites for exactrev (run: asv machine --yes; asv run --python=same --quick)."""
