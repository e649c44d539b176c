"""Comparing MLflow runs: one table (model, family, backend, compile mode, data version, throughput, EM/F1, v2
HasAns/NoAns), the benchmark layout `GPU | Run Mode | train_steps_per_second`, PNG plots and one self-contained HTML
report.

Where the report goes: the output directory, and the artifacts of a new *comparison run* in the experiment
(tagged `qaflow.kind=comparison`, run name `compare-<UTC time>`, the compared run ids in the
`qaflow.compared_runs` tag). A run of its own rather than the experiment's latest run: finished training runs stay
as they were (their run keys decide retrain skips), every comparison is kept with the runs it covered, and
comparison runs are left out of later comparisons.

The rooms: `rows` (the runs read from the tracker), `tables` (cells, rich and HTML tables), `plots` (PNGs),
`report` (the files, the comparison run, `compare`). This package re-exports the names callers use.
"""

from tasks.pipeline.compare.plots import PNG_MAGIC
from tasks.pipeline.compare.report import SLICES_COMPARISON, Comparison, compare
from tasks.pipeline.compare.rows import RunRow
from tasks.pipeline.compare.tables import benchmark_table, rich_slice_table, rich_tables, table_cells

__all__ = [
    "PNG_MAGIC",
    "SLICES_COMPARISON",
    "Comparison",
    "RunRow",
    "benchmark_table",
    "compare",
    "rich_slice_table",
    "rich_tables",
    "table_cells",
]
