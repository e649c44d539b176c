"""Batched, streaming inference for extractive QA with bounded memory.

Examples are processed in chunks: tokenise the chunk's windows, run the model in batches, post-process the chunk
(all of its features are then known), stream the n-best entries to disk and drop everything else. Memory is set by
the chunk size, not by the dataset. Raw logits are saved as per-chunk shards so n-best post-processing can be
re-run later with other settings without the model (`qaflow postprocess --raw DIR`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from tasks.data import Example
from tasks.features import Features, FeatureSettings, prepare_eval_features
from tasks.io import atomic_path, write_json_atomic
from tasks.postprocess import NBestSettings, Postprocessed, postprocess_predictions

log = logging.getLogger(__name__)

RAW_FORMAT = "qaflow-raw-logits/1"
PAD_LOGIT = -1e4  # logit written at padding positions


@dataclass
class PredictionRun:
    """Final answers plus throughput; the n-best file was already streamed to disk."""

    predictions: dict[str, str]
    null_odds: dict[str, float] | None
    files: dict[str, Path]
    metrics: dict[str, float] = field(default_factory=dict)


def chunks(items: Sequence[Example], size: int) -> Iterator[tuple[int, Sequence[Example]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


@torch.inference_mode()
def forward_logits(model: Any, features: Features, batch_size: int, device: torch.device) -> tuple[np.ndarray, ...]:
    """Start/end logits [N, L] (float32) for every feature, in batches; padding columns trimmed per batch."""
    n, length = features.input_ids.shape
    start = np.full((n, length), PAD_LOGIT, dtype=np.float32)
    end = np.full((n, length), PAD_LOGIT, dtype=np.float32)
    for lo in range(0, n, batch_size):
        sl = slice(lo, min(lo + batch_size, n))
        mask = features.attention_mask[sl]
        cols = np.flatnonzero(mask.any(axis=0))
        c0, c1 = int(cols[0]), int(cols[-1]) + 1  # contiguous non-padding band (left or right padding)
        inputs = {"input_ids": features.input_ids[sl, c0:c1], "attention_mask": mask[:, c0:c1]}
        if features.token_type_ids is not None:
            inputs["token_type_ids"] = features.token_type_ids[sl, c0:c1]
        batch = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64)).to(device) for k, v in inputs.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(**batch)
        pad = mask[:, c0:c1] == 0  # padding never competes for the n-best, whatever else shares the batch
        start[sl, c0:c1] = np.where(pad, PAD_LOGIT, out.start_logits.float().cpu().numpy())
        end[sl, c0:c1] = np.where(pad, PAD_LOGIT, out.end_logits.float().cpu().numpy())
    return start, end


class NBestStreamWriter:
    """Writes `{"id": [n-best...], ...}` incrementally to a temp file that is renamed into place on close."""

    def __init__(self, path: Path) -> None:
        self._ctx = atomic_path(path)
        self._tmp = self._ctx.__enter__()
        self._fh: IO[str] = open(self._tmp, "x", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._fh.write("{")
        self._first = True

    def add(self, nbest: dict[str, list[dict]]) -> None:
        for qid, entries in nbest.items():
            self._fh.write(("\n" if self._first else ",\n") + json.dumps(qid) + ": " + json.dumps(entries))
            self._first = False

    def close(self, ok: bool = True) -> None:
        self._fh.write("\n}\n")
        self._fh.close()
        if ok:
            self._ctx.__exit__(None, None, None)
        else:
            err = RuntimeError("prediction aborted")
            with contextlib.suppress(RuntimeError):
                self._ctx.__exit__(RuntimeError, err, None)


def save_raw_shard(raw_dir: Path, index: int, ids: list[str], features: Features, start, end) -> None:
    """One chunk's raw logits and the feature metadata needed to post-process them again."""
    with atomic_path(raw_dir / f"part-{index:05d}.npz") as tmp, open(tmp, "xb") as f:
        np.savez(
            f,
            example_ids=np.asarray(ids, dtype=object).astype(str),
            example_index=features.example_index,
            offsets=features.offsets,
            cls_index=features.cls_index,
            start_logits=start.astype(np.float32),
            end_logits=end.astype(np.float32),
        )


def iter_raw_shards(raw_dir: Path) -> Iterator[dict[str, np.ndarray]]:
    meta = raw_dir / "raw_meta.json"
    if not meta.exists():
        raise FileNotFoundError(f"{raw_dir}: not a raw-predictions directory (no raw_meta.json)")
    for part in sorted(raw_dir.glob("part-*.npz")):
        with np.load(part, allow_pickle=False) as z:
            yield {k: z[k] for k in z.files}


def postprocess_raw_dir(raw_dir: Path, examples: Sequence[Example], settings: NBestSettings, out_dir: Path):
    """Re-run n-best post-processing from saved raw shards (bounded memory, no model needed)."""
    by_id = {ex.id: ex for ex in examples}
    writer = NBestStreamWriter(out_dir / "nbest_predictions.json")
    predictions: dict[str, str] = {}
    null_odds: dict[str, float] = {}
    try:
        for shard in iter_raw_shards(Path(raw_dir)):
            ids = [str(i) for i in shard["example_ids"]]
            missing = [i for i in ids if i not in by_id]
            if missing:
                raise ValueError(
                    f"{raw_dir}: raw predictions name {len(missing)} ids not in the data, e.g. {missing[0]!r}"
                )
            chunk = [by_id[i] for i in ids]
            post = postprocess_predictions(
                chunk, shard["example_index"], shard["offsets"], shard["cls_index"],
                shard["start_logits"], shard["end_logits"], settings,
            )  # fmt: skip
            collect(post, writer, predictions, null_odds)
    except BaseException:
        writer.close(ok=False)
        raise
    writer.close()
    return finish_outputs(out_dir, predictions, null_odds if settings.version_2_with_negative else None)


def collect(post: Postprocessed, writer: NBestStreamWriter, predictions: dict, null_odds: dict) -> None:
    predictions.update(post.predictions)
    writer.add(post.nbest)
    if post.null_odds:
        null_odds.update(post.null_odds)


def finish_outputs(out_dir: Path, predictions: dict[str, str], null_odds: dict[str, float] | None) -> PredictionRun:
    files = {"nbest": out_dir / "nbest_predictions.json"}
    files["predictions"] = write_json_atomic(predictions, out_dir / "predictions.json", indent=2)
    if null_odds is not None:
        files["null_odds"] = write_json_atomic(null_odds, out_dir / "null_odds.json", indent=2)
    return PredictionRun(predictions=predictions, null_odds=null_odds, files=files)


def predict_examples(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    feature_settings: FeatureSettings,
    nbest_settings: NBestSettings,
    out_dir: Path,
    *,
    batch_size: int = 64,
    chunk_examples: int = 256,
    save_raw: bool = True,
    device: torch.device | None = None,
) -> PredictionRun:
    """Stream `examples` through the model and post-processing; write predictions, n-best, null odds (v2)."""
    device = device or next(model.parameters()).device
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    raw_dir = out_dir / "raw_predictions"
    if save_raw:
        raw_dir.mkdir(exist_ok=True)
        for stale in raw_dir.glob("part-*.npz"):
            stale.unlink()
    writer = NBestStreamWriter(out_dir / "nbest_predictions.json")
    predictions: dict[str, str] = {}
    null_odds: dict[str, float] = {}
    n_features = 0
    model_seconds = 0.0
    t0 = time.perf_counter()
    try:
        for shard, (_, chunk) in enumerate(chunks(examples, chunk_examples)):
            feats = prepare_eval_features(chunk, tokenizer, feature_settings)
            m0 = time.perf_counter()
            start, end = forward_logits(model, feats, batch_size, device)
            model_seconds += time.perf_counter() - m0
            n_features += len(feats)
            if save_raw:
                save_raw_shard(raw_dir, shard, [ex.id for ex in chunk], feats, start, end)
            post = postprocess_predictions(
                chunk, feats.example_index, feats.offsets, feats.cls_index, start, end, nbest_settings
            )
            collect(post, writer, predictions, null_odds)
            log.info("predicted %d/%d examples (%d features)", len(predictions), len(examples), n_features)
    except BaseException:
        writer.close(ok=False)
        raise
    writer.close()
    if save_raw:
        write_json_atomic(
            {"format": RAW_FORMAT, "features": n_features, "examples": len(examples)},
            raw_dir / "raw_meta.json",
        )
    run = finish_outputs(out_dir, predictions, null_odds if nbest_settings.version_2_with_negative else None)
    if save_raw:
        run.files["raw"] = raw_dir
    run.metrics = speed_metrics(len(examples), n_features, time.perf_counter() - t0, model_seconds)
    return run


def speed_metrics(n_examples: int, n_features: int, elapsed: float, model_seconds: float) -> dict[str, float]:
    """Prediction throughput: examples/s end to end, features/s in the model."""
    return {
        "predict_runtime": elapsed,
        "predict_samples_per_second": n_examples / elapsed if elapsed else 0.0,
        "predict_features_per_second": n_features / model_seconds if model_seconds else 0.0,
        "predict_features": float(n_features),
    }
