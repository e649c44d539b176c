"""run_qa.py's training dataset, as its Trainer sees it (shared by the benchmarks; imports nothing of qaflow)."""

from __future__ import annotations

from typing import Any

import numpy as np


class PaddedWindows:
    """Every window padded to max_seq_length, with start/end labels, one dict of int64 arrays per item."""

    COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions")

    def __init__(self, features: Any) -> None:
        self.columns = {c: getattr(features, c) for c in self.COLUMNS if getattr(features, c) is not None}

    def __len__(self) -> int:
        return len(self.columns["input_ids"])

    def __getitem__(self, i: int) -> dict[str, Any]:
        # run_qa's datasets hold int64 columns; qaflow's feature files store compact int32/uint8 ones
        return {c: np.asarray(values[i], dtype=np.int64) for c, values in self.columns.items()}
