"""Entry point for loading this folder with `evaluate.load("<repo>/tasks/core/metrics_module", config_name=...)`.

evaluate looks for `<folder>/<folder name>.py`; this re-exports the metric from `qaflow_squad.py` (evaluate
copies that relative import next to this file in its module cache).
"""

from .qaflow_squad import QaflowSquad

__all__ = ["QaflowSquad"]
