"""Benchmarks of remediator against a baseline, measured in the same run: ``python -m bench``.

Each benchmark starts real processes on 127.0.0.1 (a ``remediator serve``, the bare baseline app
in ``bench/baseline_app.py``, load generators), stops each by its PID, and prints a table with
remediator's numbers, the baseline's, their ratio and the machine's core count. See
``docs/performance.md`` for the results and the profiles.
"""
