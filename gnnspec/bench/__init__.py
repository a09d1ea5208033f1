"""Benchmarks: gnnspec against FEFF10, the seed paper's method and classical baselines.

``python -m gnnspec.bench [--quick]`` (``make bench``) writes ``benchmarks/report.md`` and figures.
"""
