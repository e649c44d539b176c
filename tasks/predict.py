"""Streaming prediction for any model family, with bounded memory.

Examples go through in chunks: the family builds the chunk's features, runs the model over them in batches
(its raw outputs), and post-processes them into answers, n-best lists and (v2) null odds; the n-best entries are
streamed to disk and everything else of the chunk is dropped. Memory is set by the chunk size, not by the data
set. Families with a raw-logits format (extractive) also save each chunk's raw outputs
(`tasks.core.raw_logits`), so n-best can be re-run later with other settings and no model
(`postprocess_raw_dir`, `qaflow postprocess --raw DIR`).

Under torchrun (`ranks`), every rank runs the model on its share of each chunk's batches and rank 0 gathers the
raw outputs, post-processes and writes exactly as one process does (`tasks.core.shares`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tasks.core.calibration import null_above
from tasks.core.data import Example
from tasks.core.family import ModelFamily
from tasks.core.io import OutputSet, atomic_path, write_json_atomic
from tasks.core.postprocess import NBestSettings, NBestView, Postprocessed, postprocess_predictions
from tasks.core.progress import progress
from tasks.core.raw_logits import RawLogitsWriter, iter_raw_shards, read_raw_meta
from tasks.core.shares import Ranks, Share, put_rows, take_rows, together
from tasks.core.specs import InferenceRecipe

if TYPE_CHECKING:  # only for a type: the loop gets its device from the caller or the model, never from torch
    import torch

log = logging.getLogger(__name__)

# Examples per chunk: a few MB of windows and logits at 384; the larger the chunk, the better its windows batch by
# length (benchmarks/predict_order.py, 3,000 SQuAD dev questions on CPU: 1.42x over feature order at 256, 1.73x at 1024)
CHUNK_EXAMPLES = 1024
# The files one prediction writes, replaced together (tasks.core.io.OutputSet). metrics.json is a member so a new
# prediction never sits beside the previous run's scores; the scorer writes it after the set is in place.
PREDICTION_FILES = ("predictions.json", "nbest_predictions.json", "null_odds.json", "metrics.json")
RAW_DIR = "raw_predictions"


@dataclass(frozen=True)
class PredictionFiles:
    """The names of one prediction's files. With a `prefix` they are run_qa.py's (`eval_predictions.json`,
    `eval_nbest_predictions.json`, `eval_null_odds.json`), qaflow's raw logits `eval_raw_predictions/`, and the
    scores `eval_results.json` (written by the caller, in run_qa's form, after the set is in place)."""

    prefix: str = ""

    def _named(self, base: str) -> str:
        return f"{self.prefix}_{base}" if self.prefix else base

    @property
    def predictions(self) -> str:
        return self._named(PREDICTION_FILES[0])

    @property
    def nbest(self) -> str:
        return self._named(PREDICTION_FILES[1])

    @property
    def null_odds(self) -> str:
        return self._named(PREDICTION_FILES[2])

    @property
    def metrics(self) -> str:
        return f"{self.prefix}_results.json" if self.prefix else PREDICTION_FILES[3]

    @property
    def raw(self) -> str:
        return self._named(RAW_DIR)

    def members(self, *, raw: bool = True) -> tuple[str, ...]:
        return (self.predictions, self.nbest, self.null_odds, self.metrics, *((self.raw,) if raw else ()))


UNANSWERED_NULL_ODDS = 1e9  # certain "no answer" for the v2 scorer (finite: strict JSON has no Infinity)


def unanswered_outputs(ids: Sequence[str]) -> Postprocessed:
    """ "" for each id, with probability 1 and certain null odds."""
    return Postprocessed(
        predictions={qid: "" for qid in ids},
        nbest={qid: [{"text": "", "probability": 1.0, "score": 0.0}] for qid in ids},
        null_odds={qid: UNANSWERED_NULL_ODDS for qid in ids},
    )


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


class NBestStreamWriter:
    """Writes `{"id": [n-best...], ...}` incrementally to a temp file that is renamed into place on close."""

    def __init__(self, path: Path) -> None:
        self._ctx = atomic_path(path)
        self._tmp = self._ctx.__enter__()
        self._fh: IO[str] = open(self._tmp, "x", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._fh.write("{")
        self._first = True

    def add(self, nbest: Mapping[str, list[dict]]) -> None:
        if isinstance(nbest, NBestView):  # the same text, without building ~20 dicts per question
            items: Iterable[tuple[str, str]] = nbest.json_items()
        else:
            items = ((qid, json.dumps(entries)) for qid, entries in nbest.items())
        for qid, text in items:
            self._fh.write(("\n" if self._first else ",\n") + json.dumps(qid) + ": " + text)
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


def postprocess_raw_dir(raw_dir: Path, examples: Sequence[Example], settings: NBestSettings, out_dir: Path):
    """Re-run n-best post-processing from saved raw logits (bounded memory, no model needed).

    The raw logits must cover exactly the examples given (same ids): predictions made from other data, or a
    partial set, are refused instead of giving a partial answer file.
    """
    by_id = {ex.id: ex for ex in examples}
    meta = read_raw_meta(Path(raw_dir))
    if meta.get("examples") is not None and meta["examples"] != len(by_id):
        raise ValueError(
            f"{raw_dir}: the raw logits cover {meta['examples']} examples but the data has {len(by_id)}; "
            "were they made from other data?"
        )
    out_set = OutputSet(out_dir, PREDICTION_FILES)
    writer = NBestStreamWriter(out_set.stage("nbest_predictions.json"))
    predictions: dict[str, str] = {}
    null_odds: dict[str, float] = {}
    try:
        for shard in iter_raw_shards(Path(raw_dir)):
            missing = [i for i in shard.example_ids if i not in by_id]
            if missing:
                raise ValueError(
                    f"{raw_dir}: raw predictions name {len(missing)} ids not in the data, e.g. {missing[0]!r}"
                )
            chunk = [by_id[i] for i in shard.example_ids]
            post = postprocess_predictions(
                chunk, shard.example_index, shard.offsets, shard.cls_index,
                shard.start_logits, shard.end_logits, settings,
            )  # fmt: skip
            collect(post, writer, predictions, null_odds)
        absent = [qid for qid in by_id if qid not in predictions]
        if absent:
            raise ValueError(f"{raw_dir}: no raw logits for {len(absent)} examples of the data, e.g. {absent[0]!r}")
    except BaseException:
        writer.close(ok=False)
        out_set.abort()
        raise
    writer.close()
    return finish_outputs(out_set, predictions, null_odds if settings.version_2_with_negative else None)


def collect(post: Postprocessed, writer: NBestStreamWriter, predictions: dict, null_odds: dict) -> None:
    predictions.update(post.predictions)
    writer.add(post.nbest)
    if post.null_odds:
        null_odds.update(post.null_odds)


def finish_outputs(
    out_set: OutputSet, predictions: dict[str, str], null_odds: dict[str, float] | None,
    names: PredictionFiles = PredictionFiles(),
) -> PredictionRun:  # fmt: skip
    """Stage the answer files beside the n-best file, then swap the whole set in."""
    write_json_atomic(predictions, out_set.stage(names.predictions), indent=2)
    if null_odds is not None:
        write_json_atomic(null_odds, out_set.stage(names.null_odds), indent=2)
    files = out_set.commit()
    named = {names.predictions: "predictions", names.nbest: "nbest", names.null_odds: "null_odds", names.raw: "raw"}
    return PredictionRun(
        predictions=predictions, null_odds=null_odds, files={named[n]: p for n, p in files.items() if n in named}
    )


def predict_examples(
    family: ModelFamily,
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    recipe: InferenceRecipe,
    out_dir: Path,
    *,
    chunk_examples: int = CHUNK_EXAMPLES,
    save_raw: bool = True,
    device: torch.device | None = None,
    unanswered: Sequence[str] = (),
    prefix: str = "",
    ranks: Ranks | None = None,
) -> PredictionRun | None:
    """Stream `examples` through `family`'s model and post-processing; write predictions, n-best, null odds (v2)
    (named by `PredictionFiles(prefix)`: a prefix gives run_qa.py's `{prefix}_predictions.json`, ...).

    `unanswered` ids (questions the model was not asked, e.g. skipped as too long) are answered "" with
    certainty (v2 null odds `UNANSWERED_NULL_ODDS`), so they are scored as unanswered, never silently dropped.
    Nothing already in `out_dir` is replaced until every new file is complete; then the raw logits, the
    n-best, predictions and null odds are swapped in as one set (`PREDICTION_FILES` + `raw_predictions/`).
    With `ranks` (torchrun), every rank calls this with the same arguments: each runs the model on its share of
    the batches; rank 0 gathers, writes and returns the run; the other ranks return None.
    """
    device = device or next(model.parameters()).device
    model.eval()
    if ranks is not None and ranks.size > 1 and getattr(family, "batches", None) is None:
        log.warning("the %s family plans no batches to share: rank 0 predicts alone", family.name)
        if ranks.rank != 0:
            return None
        ranks = None
    ranks = ranks if ranks is not None and ranks.size > 1 else None
    if ranks is not None and ranks.rank != 0:
        _help_predict(family, model, tokenizer, examples, recipe, chunk_examples, device, ranks)
        return None
    names = PredictionFiles(prefix)
    out_set = OutputSet(out_dir, names.members())
    raw = RawLogitsWriter(out_set.final(names.raw), staged_in=out_set.stage(names.raw)) if save_raw else None
    writer = NBestStreamWriter(out_set.stage(names.nbest))
    predictions: dict[str, str] = {}
    null_odds: dict[str, float] = {}
    counts: dict[str, float] = {}
    model_seconds = 0.0
    computed = 0
    t0 = time.perf_counter()
    bar = progress(len(examples), f"predict ({family.name})", "examples")

    def finish_chunk(chunk: Sequence[Example], feats: Any, outputs: Any) -> None:
        for key, value in family.counts(feats).items():
            counts[key] = counts.get(key, 0.0) + value
        shard = family.raw_shard(chunk, feats, outputs) if raw is not None else None
        if shard is not None:
            raw.add(shard)
        collect(family.postprocess(chunk, feats, outputs, recipe), writer, predictions, null_odds)
        bar.update(len(chunk))

    try:
        for _, chunk in chunks(examples, chunk_examples):
            feats, outputs, share, seconds = together(
                ranks, partial(_chunk_outputs, family, model, tokenizer, chunk, recipe, device, ranks)
            )  # fmt: skip
            if share is not None and ranks is not None:
                g0 = time.perf_counter()
                computed += len(share.rows(0))
                parts = ranks.gather(take_rows(outputs, share.rows(0), share.n_rows)) or []
                for rank in range(1, ranks.size):
                    put_rows(outputs, share.rows(rank), parts[rank], share.n_rows)
                seconds += time.perf_counter() - g0  # the wait for the other ranks' shares counts as model time
            model_seconds += seconds
            together(ranks, partial(finish_chunk, chunk, feats, outputs))
        bar.close()
        collect(unanswered_outputs(unanswered), writer, predictions, null_odds)
    except BaseException:
        bar.close()
        writer.close(ok=False)
        out_set.abort()
        raise
    writer.close()
    if recipe.nbest.version_2_with_negative and recipe.null_threshold is not None:
        # the calibrated threshold for families whose post-processing does not read it (no-op for extractive)
        predictions = null_above(predictions, null_odds, recipe.nbest.null_score_diff_threshold)
    if raw is not None and raw.shards:
        raw.commit()
    elif raw is not None:
        raw.abort()
    run = finish_outputs(out_set, predictions, null_odds if recipe.nbest.version_2_with_negative else None, names)
    n_features = int(counts.pop("features", len(examples)))
    run.metrics = speed_metrics(len(examples), n_features, time.perf_counter() - t0, model_seconds)
    run.metrics.update({f"predict_{k}": v for k, v in counts.items()})
    if ranks is not None:
        run.metrics["predict_ranks"] = float(ranks.size)
        _log_share(ranks, computed, n_features)
    return run


def _chunk_outputs(
    family: ModelFamily, model: Any, tokenizer: Any, chunk: Sequence[Example], recipe: InferenceRecipe,
    device: Any, ranks: Ranks | None,
) -> tuple[Any, Any, Share | None, float]:  # fmt: skip
    """One chunk's features and the family's outputs, with the seconds in the model: all batches in one
    process; under `ranks`, this rank's share of the family's batch plan (the other rows hold placeholders)."""
    feats = family.eval_features(chunk, tokenizer, recipe)
    m0 = time.perf_counter()
    if ranks is None:
        return feats, family.forward(model, feats, recipe, device, tokenizer), None, time.perf_counter() - m0
    share = Share(family.batches(feats, recipe), ranks.size)
    outputs = family.forward(model, feats, recipe, device, tokenizer, batches=share.batches(ranks.rank))
    return feats, outputs, share, time.perf_counter() - m0


def _help_predict(
    family: ModelFamily, model: Any, tokenizer: Any, examples: Sequence[Example], recipe: InferenceRecipe,
    chunk_examples: int, device: Any, ranks: Ranks,
) -> None:  # fmt: skip
    """A rank other than 0: its share of every chunk through the model, sent to rank 0 (which post-processes)."""
    computed = 0
    for _, chunk in chunks(examples, chunk_examples):
        _, outputs, share, _ = together(
            ranks, partial(_chunk_outputs, family, model, tokenizer, chunk, recipe, device, ranks)
        )  # fmt: skip
        rows = share.rows(ranks.rank)
        ranks.gather(take_rows(outputs, rows, share.n_rows))
        computed += len(rows)
        together(ranks, lambda: None)  # rank 0 post-processes the chunk
    _log_share(ranks, computed, None)


def _log_share(ranks: Ranks, computed: int, total: int | None) -> None:
    of = f" of {total}" if total is not None else ""
    log.info("prediction rank %d/%d: the model ran %d%s features", ranks.rank, ranks.size, computed, of)


def speed_metrics(n_examples: int, n_features: int, elapsed: float, model_seconds: float) -> dict[str, float]:
    """Prediction throughput: examples/s end to end, features/s in the model."""
    return {
        "predict_runtime": elapsed,
        "predict_samples_per_second": n_examples / elapsed if elapsed else 0.0,
        "predict_features_per_second": n_features / model_seconds if model_seconds else 0.0,
        "predict_features": float(n_features),
    }
