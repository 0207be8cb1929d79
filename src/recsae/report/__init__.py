"""The report stage: one self-contained HTML page per run (``OUT/report/index.html``).

``write_report(run_dir)`` renders whatever the run folder holds; ``write_latent_examples`` /
``build_latent_examples`` prepare the per-latent examples the latent view shows (schema in
:mod:`recsae.report.examples`).
"""

from recsae.report.examples import (
    activation_histograms,
    build_latent_examples,
    write_latent_examples,
)
from recsae.report.html import render_report, write_report
from recsae.report.run_data import RunData, load_run

__all__ = [
    "RunData",
    "activation_histograms",
    "build_latent_examples",
    "load_run",
    "render_report",
    "write_latent_examples",
    "write_report",
]
