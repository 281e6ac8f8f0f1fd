"""The benchmark: the real system on this machine, five scenarios, one JSON report and a chart.

Run ``python -m ops.bench [--scenarios 1,2,3,4,5] [--smoke] [--out DIR]``; see README.md.
Modules: ``stack`` (processes), ``measure`` (psutil, Redis), ``runner`` (jobs to figures),
``floor`` (Celery's ceiling, bare calls), ``scenarios`` (1-3), ``memory`` (4-5),
``report`` (JSON, PNG, table), ``noop`` and ``naive`` (bench-only tasks), ``params``.
"""
