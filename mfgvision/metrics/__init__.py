"""Prometheus metrics of every module (docs/metrics.md).

Each module process serves ``/metrics`` (:class:`~mfgvision.metrics.server.MetricsServer`, started by
the module runner). Latency histograms and per-class counts are observed where they happen
(:mod:`mfgvision.metrics.source`); everything a module already counts is read from its ``status()``
at scrape time (:mod:`mfgvision.metrics.modules`).
"""
