"""Benchmarks: gnnspec against FEFF10, the seed paper's method and classical baselines.

``python -m gnnspec.bench [--quick]`` (``make bench``) writes ``benchmarks/report.md`` and figures.
"""

import subprocess


def current_commit() -> str:
    """The repository's short commit hash, for the captions of benchmark reports ("unknown" outside git)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
