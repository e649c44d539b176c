"""Model families: which kind of QA head a checkpoint has, loading it, and the Trainer run they share.

Families (config `model.model_family`):

* `extractive` — an encoder with a start/end span head (run_qa.py; `AutoModelForQuestionAnswering`).
* `beam` — XLNet with the beam-search head `XLNetForQuestionAnswering` (run_qa_beam_search.py).
  transformers 5 maps `AutoModelForQuestionAnswering` to `XLNetForQuestionAnsweringSimple`, which drops that
  head, so it is loaded explicitly.
* `seq2seq` — an encoder-decoder that generates the answer text (run_seq2seq_qa.py;
  `AutoModelForSeq2SeqLM`).

Inference from a checkpoint's config: `is_encoder_decoder` -> seq2seq (unless its architectures name a span
head, e.g. `BartForQuestionAnswering`); XLNet with `start_n_top`/`end_n_top` whose architectures contain
`XLNetForQuestionAnswering` -> beam; anything else -> extractive. A pretrained XLNet language model
(architectures `XLNetLMHeadModel`) is inferred extractive but may be asked for as `beam`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from tasks.config import QAFlowConfig
from tasks.data import Example
from tasks.train.common import TrainResult

log = logging.getLogger(__name__)

FAMILIES = ("extractive", "beam", "seq2seq")
BEAM_ARCHITECTURE = "XLNetForQuestionAnswering"
TRAIN_METRIC_KEYS = (
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "train_tokens_per_second",
    "peak_memory_mb",
    "train_loss",
)


# --------------------------------------------------------------------------------------------- inference


def load_config(model_dir_or_config: Any) -> Any:
    """A transformers `PretrainedConfig` from a config object, a config dict, or a checkpoint path/alias."""
    from transformers import AutoConfig, PretrainedConfig

    from tasks.models import resolve_model_path

    if isinstance(model_dir_or_config, PretrainedConfig):
        return model_dir_or_config
    if isinstance(model_dir_or_config, Mapping):
        raw = dict(model_dir_or_config)
        model_type = raw.pop("model_type", None)
        if not model_type:
            return PretrainedConfig(**raw)
        return AutoConfig.for_model(model_type, **raw)
    return AutoConfig.from_pretrained(resolve_model_path(str(model_dir_or_config)))


def _architectures(config: Any) -> list[str]:
    return list(getattr(config, "architectures", None) or [])


def _has_span_head(config: Any) -> bool:
    return any(
        a.endswith("ForQuestionAnswering") or a.endswith("ForQuestionAnsweringSimple") for a in _architectures(config)
    )


def _is_beam_capable(config: Any) -> bool:
    """XLNet-style config with the beam sizes the beam-search head needs."""
    return (
        getattr(config, "model_type", None) == "xlnet"
        and getattr(config, "start_n_top", None) is not None
        and getattr(config, "end_n_top", None) is not None
    )


def infer_family(model_dir_or_config: Any) -> str:
    """'extractive', 'beam' or 'seq2seq' for a checkpoint directory/alias, a config object or dict."""
    config = load_config(model_dir_or_config)
    if getattr(config, "is_encoder_decoder", False) and not _has_span_head(config):
        return "seq2seq"
    if _is_beam_capable(config) and BEAM_ARCHITECTURE in _architectures(config):
        return "beam"
    return "extractive"


def _describe(config: Any, where: str) -> str:
    arch = ", ".join(_architectures(config)) or "no architectures listed"
    return f"checkpoint {where} ({getattr(config, 'model_type', '?')}; {arch})"


def _mismatch(subject: str, problem: str, fix: str) -> ValueError:
    return ValueError(f"{subject} {problem} — use model_family: {fix}")


def resolve_family(requested: str, model_path: Any) -> str:
    """`requested`, or the inferred family for "auto"; `ValueError` when it does not fit the checkpoint."""
    if requested != "auto" and requested not in FAMILIES:
        raise ValueError(f"model_family {requested!r} is not one of auto, {', '.join(FAMILIES)}")
    config = load_config(model_path)
    inferred = infer_family(config)
    if requested in ("auto", inferred):
        return inferred
    where = str(model_path) if not hasattr(model_path, "to_dict") else f"<{type(model_path).__name__}>"
    subject = _describe(config, where)
    if inferred == "seq2seq":
        need = "an encoder with a span head" if requested == "extractive" else "an XLNet beam-search head"
        model_type = getattr(config, "model_type", "?")
        subject = f"checkpoint {where} is an encoder-decoder ({model_type});"
        raise _mismatch(subject, f"model_family {requested!r} needs {need}", "seq2seq")
    if requested == "seq2seq":
        problem = "is not an encoder-decoder; model_family 'seq2seq' needs one that generates text (e.g. T5)"
        raise _mismatch(subject, problem, inferred)
    if requested == "beam" and not _is_beam_capable(config):
        problem = "has no XLNet beam-search head; model_family 'beam' needs an XLNet checkpoint"
        raise _mismatch(subject, f"{problem} (config with start_n_top/end_n_top)", "extractive")
    if requested == "beam" and _has_span_head(config):  # a fine-tuned ...Simple: its span head would be lost
        raise _mismatch(subject, "was fine-tuned with a simple span head; 'beam' would discard it", "extractive")
    if requested == "beam":
        return "beam"
    problem = "was fine-tuned with the XLNet beam-search head; 'extractive' would discard it"
    raise _mismatch(subject, problem, "beam")


def load_model(family: str, path: str | PathLike[str]) -> Any:
    """The model class of `family` from a checkpoint (`beam` is always `XLNetForQuestionAnswering`)."""
    from transformers import AutoModelForQuestionAnswering, AutoModelForSeq2SeqLM, XLNetForQuestionAnswering

    from tasks.models import resolve_model_path

    resolved = resolve_model_path(str(path))
    if family == "extractive":
        return AutoModelForQuestionAnswering.from_pretrained(resolved)
    if family == "seq2seq":
        return AutoModelForSeq2SeqLM.from_pretrained(resolved)
    if family == "beam":
        config = load_config(resolved)
        if not _is_beam_capable(config):
            raise ValueError(f"{_describe(config, str(path))}: model_family 'beam' needs an XLNet checkpoint")
        return XLNetForQuestionAnswering.from_pretrained(resolved)
    raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")


# --------------------------------------------------------------------------------------------- training


# --------------------------------------------------------------------------------------------- dispatch


def prepare_family_train_features(family: str, examples: Sequence[Example], tokenizer: Any, cfg: QAFlowConfig) -> Any:
    """Training features of `family`: sliding windows (extractive, beam) or `Seq2SeqFeatures` (seq2seq)."""
    if family == "seq2seq":
        from tasks.seq2seq import prepare_seq2seq_train

        return prepare_seq2seq_train(
            examples, tokenizer, cfg.features.max_seq_length, cfg.postprocess.max_answer_length
        )
    from tasks.features import FeatureSettings, prepare_train_features

    f = cfg.features
    settings = FeatureSettings(f.max_seq_length, f.doc_stride, f.pad_to_max_length)
    return prepare_train_features(examples, tokenizer, settings, num_proc=f.preprocessing_num_workers)


def save_family_features(features: Any, path: Path) -> Path:
    """Save window `Features` or `Seq2SeqFeatures` to `path` (.npz, atomically)."""
    from tasks.features import Features, save_features
    from tasks.seq2seq import Seq2SeqFeatures, save_seq2seq_features

    if isinstance(features, Seq2SeqFeatures):
        return save_seq2seq_features(features, path)
    if isinstance(features, Features):
        return save_features(features, path)
    raise TypeError(f"cannot save {type(features).__name__} as training features")


def train_family(cfg: QAFlowConfig, features_path: Path, backend: str, output_dir: Path) -> TrainResult:
    """Train the configured family (`model.model_family`, "auto" = from the checkpoint) on saved features."""
    family = resolve_family(cfg.model.model_family, cfg.model.model_name_or_path)
    if family == "seq2seq":
        from tasks.seq2seq import load_seq2seq_features, train_seq2seq

        return train_seq2seq(cfg, load_seq2seq_features(features_path), backend, output_dir)
    from tasks.features import load_features

    features = load_features(features_path)
    if family == "beam":
        from tasks.beam import train_beam

        return train_beam(cfg, features, backend, output_dir)
    from tasks.train.torch_backend import train_torch

    return train_torch(cfg, features, backend, output_dir)


def predict_family(
    family: str,
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    cfg: QAFlowConfig,
    nbest_settings: Any,
    output_dir: Path,
    *,
    save_raw: bool = True,
    device: Any = None,
    val_max_answer_length: int | None = None,
    num_beams: int = 1,
) -> Any:
    """`PredictionRun` of the family's predictor with the config's windows, batch size and n-best settings.

    seq2seq generates at most `val_max_answer_length` tokens (default: `postprocess.max_answer_length`) with
    `num_beams`; raw logits are saved for the extractive family only.
    """
    from tasks.features import FeatureSettings

    f = cfg.features
    windows = FeatureSettings(f.max_seq_length, f.doc_stride, f.pad_to_max_length)
    batch_size = cfg.train.per_device_eval_batch_size
    if family == "seq2seq":
        from tasks.seq2seq import predict_seq2seq

        return predict_seq2seq(
            model, tokenizer, examples, f.max_seq_length,
            val_max_answer_length or nbest_settings.max_answer_length, num_beams, batch_size, output_dir,
            version_2_with_negative=nbest_settings.version_2_with_negative, device=device,
        )  # fmt: skip
    if family == "beam":
        from tasks.beam import predict_beam

        return predict_beam(model, tokenizer, examples, windows, nbest_settings, batch_size, output_dir, device=device)
    from tasks.predict import predict_examples

    return predict_examples(
        model, tokenizer, examples, windows, nbest_settings, output_dir,
        batch_size=batch_size, save_raw=save_raw, device=device,
    )  # fmt: skip
