"""Builders for tiny random T5 and XLNet checkpoints with tokenizers trained here on the bundled SQuAD sample.

Nothing is downloaded: a Unigram (SentencePiece-style) vocabulary of ~2000 pieces is trained with the
`tokenizers` library in a couple of seconds and wrapped in the transformers tokenizer class of the model
(`T5Tokenizer`, `XLNetTokenizer`, both fast/Rust-backed in transformers 5), so
`AutoTokenizer.from_pretrained(dir)` reloads them.

`cached_model_dir(kind, base)` builds a checkpoint once under `base` (e.g. pytest's session base temp
directory) and reuses it from every test module of the session; the directory must be treated as read-only.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.core.features import FeatureSettings
from tasks.core.postprocess import NBestSettings
from tasks.core.specs import InferenceRecipe

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_TRAIN = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-train.json"
SAMPLE_DEV_V1 = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-dev.json"
SAMPLE_DEV_V2 = REPO_ROOT / "data" / "sample" / "squad-v2.0-sample-dev.json"

VOCAB_SIZE = 2000
TRAIN_TEXTS = 1500  # contexts + questions used to train the vocabulary (~2 s)
T5_SPECIALS = ["<pad>", "</s>", "<unk>"]  # T5's ids 0, 1, 2
XLNET_SPECIALS = ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"]
_DONE = ".complete"


def sample_texts(limit: int = TRAIN_TEXTS, *, seq2seq_prompts: bool = False) -> Iterator[str]:
    """Contexts and questions of the bundled training sample, in file order (optionally T5-style prompts)."""
    data = json.loads(SAMPLE_TRAIN.read_text(encoding="utf-8"))
    count = 0
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            texts = [paragraph["context"]]
            for qa in paragraph["qas"]:
                q = qa["question"].lstrip()
                texts.append(f"question: {q} context: {paragraph['context'][:200]}" if seq2seq_prompts else q)
            for text in texts:
                if count >= limit:
                    return
                yield text
                count += 1


def train_unigram_vocab(template: Any, specials: list[str], texts: list[str], vocab_size: int) -> list:
    """(piece, log-prob) pairs of a Unigram model trained with `template`'s normalizer and pre-tokenizer."""
    from tokenizers import Tokenizer, trainers
    from tokenizers.models import Unigram

    backend = Tokenizer(Unigram())
    backend.normalizer = template.backend_tokenizer.normalizer
    backend.pre_tokenizer = template.backend_tokenizer.pre_tokenizer
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>", show_progress=False
    )
    backend.train_from_iterator(texts, trainer)
    vocab = [(piece, float(score)) for piece, score in json.loads(backend.to_str())["model"]["vocab"]]
    if [p for p, _ in vocab[: len(specials)]] != specials:
        raise RuntimeError(f"special tokens not first in the trained vocabulary: {vocab[: len(specials)]}")
    return vocab


def build_t5_tokenizer(vocab_size: int = VOCAB_SIZE) -> Any:
    """A T5 tokenizer (<pad>=0, </s>=1, <unk>=2, no sentinel tokens) with a locally trained vocabulary."""
    from transformers import T5Tokenizer

    texts = list(sample_texts(seq2seq_prompts=True))
    vocab = train_unigram_vocab(T5Tokenizer(extra_ids=0), T5_SPECIALS, texts, vocab_size)
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


def build_xlnet_tokenizer(vocab_size: int = VOCAB_SIZE) -> Any:
    """An XLNet tokenizer (left padding, `A <sep> B <sep> <cls>`, token type ids), vocabulary trained here."""
    from transformers import XLNetTokenizer

    texts = list(sample_texts())
    vocab = train_unigram_vocab(XLNetTokenizer(), XLNET_SPECIALS, texts, vocab_size)
    return XLNetTokenizer(
        vocab=vocab,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        padding_side="left",
        model_max_length=512,
    )


def build_tiny_t5(directory: Path, seed: int = 0) -> Path:
    """A random T5 (d_model 64, 2+2 layers, 2 heads) and its trained tokenizer, saved to `directory`."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = build_t5_tokenizer()
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=64,
        d_kv=32,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    model = T5ForConditionalGeneration(config)
    model.generation_config.decoder_start_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_tiny_xlnet(directory: Path, seed: int = 0) -> Path:
    """A random XLNet beam-search QA model (d_model 64, 2 layers, start/end_n_top 5) and its tokenizer."""
    import torch
    from transformers import XLNetConfig, XLNetForQuestionAnswering

    tokenizer = build_xlnet_tokenizer()
    torch.manual_seed(seed)
    config = XLNetConfig(
        vocab_size=len(tokenizer),
        d_model=64,
        n_layer=2,
        n_head=2,
        d_inner=128,
        start_n_top=5,
        end_n_top=5,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        architectures=["XLNetForQuestionAnswering"],
    )
    XLNetForQuestionAnswering(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


BUILDERS = {"t5": build_tiny_t5, "xlnet": build_tiny_xlnet}


def cached_model_dir(kind: str, base: Path) -> Path:
    """`base/tiny-<kind>`, built on first use (atomically: a half-built directory is never reused)."""
    target = Path(base) / f"tiny-{kind}"
    if (target / _DONE).exists():
        return target
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    BUILDERS[kind](tmp)
    (tmp / _DONE).touch()
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def model_with_recipe(model_dir: Path, dest: Path, family: str = "extractive", **settings: Any) -> Path:
    """A copy of `model_dir` in `dest` with an inference recipe (windows / n-best fields as keyword arguments)."""
    windows = {k: settings.pop(k) for k in ("max_seq_length", "doc_stride") if k in settings}
    nbest = {
        k: settings.pop(k) for k in ("n_best_size", "max_answer_length", "version_2_with_negative") if k in settings
    }
    recipe = InferenceRecipe(family, FeatureSettings(**windows), NBestSettings(**nbest), **settings)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(model_dir, dest)
    recipe.save(dest)
    return dest
