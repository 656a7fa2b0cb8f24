"""The per-run HTML report: self-contained (inline SVG, inline CSS), readable offline.

Map:
  render_report(dataset) -> str      the HTML of report.html for a ``grayctl.dataset.Dataset``
  render      gathers the numbers, draws, fills templates/report.html.j2
  plots       matplotlib (Agg) figures as inline SVG, one colour scheme
  (effect sizes: grayctl.stats, shared with the dataset's impact classes)
  checks      the experiment's steady-state checks: the verdicts the run's Prometheus gave (manifest)
"""

from grayctl.report.render import render_report

__all__ = ["render_report"]
