"""Publishing to the Hugging Face Hub: the champion (`qaflow push-to-hub`) or a `qaflow train` output
(`--push_to_hub`, as run_qa.py's `trainer.push_to_hub`): weights + tokenizer + a generated model card.

`build_hub_folder` writes exactly the folder that `push_to_hub` uploads (so `--dry-run DIR` shows it); the model
card is a `huggingface_hub.ModelCard` with the family's pipeline tag. The token comes from a token file or
huggingface_hub's own lookup (`get_token`: `HF_TOKEN`, then `hf auth login`), is handed to `huggingface_hub.HfApi`
only, and is never logged, written, or put into an error message; the folder is scanned for it before any upload.
Nothing in the registry changes unless the upload succeeded (then the version gets `qaflow.hub.*` tags).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData, get_token

from tasks.core.config import QAFlowConfig
from tasks.core.io import write_bytes_atomic
from tasks.core.layout import MODEL_CARD, RESULT_SPLITS, TrainPaths, model_files
from tasks.core.model_spec import OFFLINE_DEFAULT
from tasks.tracking import tags as tag
from tasks.tracking.tracker import Tracker

SKIP_FILES = {"training_args.bin"}  # pickled TrainingArguments: may carry hub tokens, no use for inference
CARD_PARAMS = (
    "model.model_name_or_path", "model.model_family", "features.max_seq_length", "features.doc_stride",
    "train.learning_rate", "train.num_train_epochs", "train.max_steps", "train.per_device_train_batch_size",
    "train.gradient_accumulation_steps", "train.warmup_ratio", "train.weight_decay", "train.seed", "train.bf16",
    "train.fp16", "train.torch_compile", "train.torch_compile_mode", "data.train_file", "data.validation_file",
    "data.max_train_samples", "data.max_eval_samples",
)  # fmt: skip
THROUGHPUT = ("train_steps_per_second", "train_samples_per_second", "train_tokens_per_second",
              "train_runtime", "peak_memory_mb", "predict_samples_per_second")  # fmt: skip
EVAL_METRICS = ("exact_match", "exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "best_f1")
DEFAULT_ENDPOINT = "https://huggingface.co"


class HubError(RuntimeError):
    """A hub push that could not be done; the message never contains the token."""


@dataclass
class HubFolder:
    path: Path
    model: str
    version: str
    files: list[str]
    card: dict[str, Any] = field(default_factory=dict)


@dataclass
class HubPush:
    repo_id: str
    model: str
    version: str
    endpoint: str
    commit_url: str | None
    files: list[str]


# ----------------------------------------------------------------------------------------- token


def find_token(token_file: str | Path | None = None) -> str | None:
    """The token from `token_file` (first line), else `HF_TOKEN`, else the one `hf auth login` saved; or None."""
    if token_file is not None:
        path = Path(token_file)
        if not path.is_file():
            raise HubError(f"token file {path} does not exist")
        text = path.read_text(encoding="utf-8").strip()
        return text.splitlines()[0].strip() if text else None
    return get_token()  # huggingface_hub's own lookup: HF_TOKEN, then the token `hf auth login` saved


def resolve_token(token_file: str | Path | None = None) -> str:
    """`find_token`, or a HubError naming where to put one."""
    token = find_token(token_file)
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN, run `hf auth login`, or pass --token-file FILE")
    return token


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def assert_no_secret(folder: Path, secret: str) -> None:
    """Fail if `secret` occurs in any file under `folder` (names included)."""
    needle = secret.encode("utf-8")
    for path in folder.rglob("*"):
        if secret in path.name or (path.is_file() and needle in path.read_bytes()):
            raise HubError(f"refusing to upload: the token occurs in {path.relative_to(folder)}")


# ----------------------------------------------------------------------------------------- folder


def _model_dir(downloaded: Path) -> Path:
    """The weights + tokenizer directory inside a downloaded qaflow pyfunc model."""
    mlmodel = yaml.safe_load((downloaded / "MLmodel").read_text(encoding="utf-8"))
    artifacts = mlmodel.get("flavors", {}).get("python_function", {}).get("artifacts", {})
    if "model_dir" not in artifacts:
        raise HubError("the registered model is not a qaflow QA pyfunc (no model_dir artifact)")
    return downloaded / artifacts["model_dir"]["path"]


# what the hub needs per family: its pipeline tag, tags, one line of description and the loading snippet
FAMILY_CARDS: dict[str, dict[str, Any]] = {
    "extractive": {
        "pipeline_tag": "question-answering", "tags": ["question-answering", "extractive-qa"],
        "what": "Extractive question answering (answer spans in the context)",
        "usage": [
            "from transformers import AutoModelForQuestionAnswering, AutoTokenizer",
            'model = AutoModelForQuestionAnswering.from_pretrained("{repo}")',
            'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
            'inputs = tokenizer("Who built it?", "The tower was built by Gustave Eiffel.", return_tensors="pt")',
            "out = model(**inputs)",
            "start, end = int(out.start_logits.argmax()), int(out.end_logits.argmax())  # qaflow: n-best over windows",
            'print(tokenizer.decode(inputs["input_ids"][0, start : end + 1]))',
        ],
    },
    "beam": {
        "pipeline_tag": "question-answering", "tags": ["question-answering", "extractive-qa", "xlnet", "beam-search"],
        "what": "Extractive question answering with XLNet's start/end beam search head",
        "usage": [
            "from transformers import AutoTokenizer, XLNetForQuestionAnswering",
            'model = XLNetForQuestionAnswering.from_pretrained("{repo}")  # the beam-search head, not ...Simple',
            'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
            'inputs = tokenizer("Who built it?", "The tower was built by Gustave Eiffel.", return_tensors="pt")',
            "outputs = model(**inputs)  # start_top_index / end_top_index / cls_logits: qaflow's n-best decodes them",
        ],
    },
    "seq2seq": {
        "pipeline_tag": "text2text-generation", "tags": ["question-answering", "generative-qa", "text2text-generation"],
        "what": "Generative question answering (an encoder-decoder writes the answer)",
        "usage": [
            "from transformers import AutoModelForSeq2SeqLM, AutoTokenizer",
            'model = AutoModelForSeq2SeqLM.from_pretrained("{repo}")',
            'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
            'text = "question: Who built it? context: The tower was built by Gustave Eiffel."',
            "answer = model.generate(**tokenizer(text, return_tensors=\"pt\"), max_new_tokens=30)",
            "print(tokenizer.decode(answer[0], skip_special_tokens=True))",
        ],
    },
}  # fmt: skip
OFFLINE_BASES = {OFFLINE_DEFAULT: "sentence-transformers/all-MiniLM-L6-v2"}  # what the offline alias packages
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def base_model_id(name_or_path: str | None) -> str | None:
    """The hub id of the model fine-tuned from (an alias mapped); None for a local directory."""
    if not name_or_path:
        return None
    name = OFFLINE_BASES.get(name_or_path, name_or_path)
    return name if _HUB_ID.match(name) and not name.startswith(".") else None


def model_card(info: dict[str, Any], repo_id: str | None, family: str = "extractive") -> ModelCard:
    """The model card (`huggingface_hub.ModelCard`): metadata with the family's pipeline tag, base model and
    `EvalResult`s; a body with metrics, data, parameters, hardware, speed and a usage snippet for the family."""
    metrics, params, tags = info["metrics"], info["params"], info["tags"]
    registered = info.get("version") is not None  # else a `qaflow train` output directory
    name = (repo_id or (f"{info['model']}-v{info['version']}" if registered else info["model"])).split("/")[-1]
    kind = FAMILY_CARDS.get(family, FAMILY_CARDS["extractive"])
    v2 = any(k.startswith(("HasAns", "NoAns")) for k in metrics)
    dataset = Path(params.get("data.validation_file", "eval")).name
    results = [
        EvalResult(task_type="question-answering", task_name="Question Answering", dataset_type="squad_v2" if v2
                   else "squad", dataset_name=dataset, metric_type=k, metric_name=k,
                   metric_value=round(float(metrics[k]), 4))
        for k in EVAL_METRICS if k in metrics
    ]  # fmt: skip
    data = ModelCardData(
        library_name="transformers", pipeline_tag=kind["pipeline_tag"], tags=[*kind["tags"], "qaflow"],
        base_model=base_model_id(params.get("model.model_name_or_path")), model_name=name,
        eval_results=results or None,
        qaflow={
            "family": family, "registered_model": info["model"], "version": info["version"],
            "run_id": info["run_id"], "data_version": tags.get(tag.DATA_VERSION), "run_key": tags.get(tag.RUN_KEY),
            "backend": tags.get(tag.BACKEND), "device": tags.get(tag.DEVICE),
            **{k: round(float(metrics[k]), 4) for k in THROUGHPUT if k in metrics},
        },
    )  # fmt: skip
    origin = (f"registered model `{info['model']}` version {info['version']}, MLflow run `{info['run_id']}`"
              if registered else f"`qaflow train`, output directory `{info['model']}`")  # fmt: skip
    lines = [f"# {name}", "", f"{kind['what']}, fine-tuned by qaflow ({origin}).", "",
             "## Evaluation", "", "| metric | value |", "|---|---|"]  # fmt: skip
    lines += [f"| {r.metric_type} | {r.metric_value:.2f} |" for r in results]
    lines += ["", "## Data", "", f"- data version (DVC): `{tags.get(tag.DATA_VERSION, '-')}`"]
    lines += [
        f"- {k.split('.', 1)[1]}: `{_public(params[k])}`" for k in CARD_PARAMS if k.startswith("data.") and k in params
    ]
    lines += ["", "## Training configuration", "", "| parameter | value |", "|---|---|"]
    lines += [f"| {k} | {_public(params[k])} |" for k in CARD_PARAMS if not k.startswith("data.") and k in params]
    hardware = f"- backend: `{tags.get(tag.BACKEND, '-')}`, device: `{tags.get(tag.DEVICE, '-')}`"
    lines += ["", "## Hardware and throughput", "", hardware]
    lines += [f"- {k}: {float(metrics[k]):.3f}" for k in THROUGHPUT if k in metrics]
    lines += ["", "## Usage", "", "```python", *(u.format(repo=repo_id or name) for u in kind["usage"]), "```", "",
              "`inference_recipe.json`: how qaflow predicts with this model (family, windows, n-best, generation).",
              ""]  # fmt: skip
    return ModelCard(f"---\n{data.to_yaml()}\n---\n" + "\n".join(lines))


def recipe_family(model_dir: Path, tags: dict[str, str]) -> str:
    """The family the model was trained as: its `inference_recipe.json`, else the run's `qaflow.family` tag."""
    recipe = model_dir / "inference_recipe.json"
    if recipe.is_file():
        return str(json.loads(recipe.read_text(encoding="utf-8")).get("family") or "extractive")
    return tags.get(tag.FAMILY) or "extractive"


def _public(value: str) -> str:
    """A local absolute path is shown by its last component (the card is public; the machine's layout is not)."""
    return Path(value).name if value.startswith("/") else value


def version_info(tracker: Tracker, alias: str) -> dict[str, Any]:
    """Model name, version, run id, and the run's metrics, params and tags for the version `model@alias`."""

    version = tracker.version_by_alias(alias)
    if version is None:
        raise HubError(f"model '{tracker.model_name}' has no '{alias}' version (run `qaflow promote` first)")
    run = tracker.get_run(version.run_id) if version.run_id else None
    return {
        "model": tracker.model_name, "version": version.version, "run_id": version.run_id,
        "metrics": run.metrics if run else {}, "params": run.params if run else {},
        "tags": run.tags if run else {}, "version_tags": dict(version.tags),
    }  # fmt: skip


def build_hub_folder(
    tracker: Tracker, out_dir: Path, *, alias: str = "champion", repo_id: str | None = None
) -> HubFolder:
    """Write the upload folder for `model@alias`: model + tokenizer files, `inference_recipe.json`, `README.md`."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise HubError(f"{out_dir} exists and is not a directory")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise HubError(f"{out_dir} exists and is not empty")
    name = tracker.model_name
    info = version_info(tracker, alias)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qaflow-hub-") as tmp:
        downloaded = tracker.download_model(f"models:/{name}/{info['version']}", Path(tmp))
        model_dir = _model_dir(downloaded)
        for path in sorted(model_dir.iterdir()):
            if path.is_file() and path.name not in SKIP_FILES:
                shutil.copy2(path, out_dir / path.name)
    if not any(out_dir.glob("*.safetensors")) and not any(out_dir.glob("*.bin")):
        raise HubError(f"no weights found in the model of {name} v{info['version']}")
    card = model_card(info, repo_id, recipe_family(out_dir, info["tags"]))
    card.save(out_dir / "README.md")
    files = sorted(p.name for p in out_dir.iterdir() if p.is_file())
    return HubFolder(out_dir, name, info["version"], files, card.data.to_dict())


# ----------------------------------------------------------------------------------------- push


def build_train_folder(
    cfg: QAFlowConfig, paths: TrainPaths, out_dir: Path, metrics: dict[str, float], *, repo_id: str | None = None
) -> HubFolder:
    """The upload folder of a `qaflow train` output (run_qa's `trainer.push_to_hub`): the model's files (no
    pickles), run_qa's result files, `trainer_state.json` and a model card `README.md`, which is also written to
    the output root (run_qa's `create_model_card`). `metrics` are run_qa's (`train_*`, `eval_*`)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise HubError(f"{out_dir} exists and is not an empty directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = [paths.results_file(split) for split in ("all", *RESULT_SPLITS)] + [paths.state_file]
    for path in [*model_files(paths.model_dir), *results]:
        if path.is_file() and path.name not in SKIP_FILES and path.name != MODEL_CARD:
            shutil.copy2(path, out_dir / path.name)
    if not any(out_dir.glob("*.safetensors")) and not any(out_dir.glob("*.bin")):
        raise HubError(f"no weights found in {paths.model_dir}")
    params = {f"{section}.{k}": str(v) for section, values in cfg.to_dict().items() for k, v in values.items()}
    scores = {k.removeprefix("eval_"): v for k, v in metrics.items() if k.startswith("eval_")}
    info = {"model": paths.root.resolve().name, "version": None, "run_id": None, "params": params, "tags": {},
            "metrics": {**metrics, **scores}}  # fmt: skip
    card = model_card(info, repo_id, recipe_family(out_dir, {}))
    card.save(out_dir / MODEL_CARD)
    write_bytes_atomic((out_dir / MODEL_CARD).read_bytes(), paths.model_card)
    files = sorted(p.name for p in out_dir.iterdir() if p.is_file())
    return HubFolder(out_dir, info["model"], "", files, card.data.to_dict())


def push_train_output(
    cfg: QAFlowConfig, paths: TrainPaths, metrics: dict[str, float], repo_id: str, token: str, *,
    endpoint: str | None = None, private: bool | None = None,
) -> HubPush:  # fmt: skip
    """`qaflow train --push_to_hub`: upload the output's folder (`build_train_folder`) to `repo_id`."""
    check_repo_id(repo_id)
    url = hub_endpoint(endpoint)
    with tempfile.TemporaryDirectory(prefix="qaflow-hub-push-") as tmp:
        folder = build_train_folder(cfg, paths, Path(tmp) / "upload", metrics, repo_id=repo_id)
        commit_url = upload(folder, repo_id, token, url, private, f"qaflow train: {paths.root.resolve().name}",
                            what=f"{paths.root} (kept as written)")  # fmt: skip
    return HubPush(repo_id, folder.model, folder.version, url, commit_url, folder.files)


def check_repo_id(repo_id: str | None) -> str:
    if not repo_id or "/" not in repo_id:
        raise HubError(f"repo id must look like 'user/name', got {repo_id!r}")
    return repo_id


def upload(folder: HubFolder, repo_id: str, token: str, url: str, private: bool | None, message: str, *,
           what: str) -> str | None:  # fmt: skip
    """Create `repo_id` if needed and upload `folder`; the commit URL. Any failure is one HubError line that
    names `what` was pushed and never the token."""
    from huggingface_hub import HfApi

    assert_no_secret(folder.path, token)
    api = HfApi(endpoint=url, token=token, library_name="qaflow")
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder.path, commit_message=message)
    except Exception as exc:  # network, auth, hub-side errors: all end here, nothing changed
        detail = redact(" ".join(str(exc).split()) or type(exc).__name__, token)[:500]
        reason = "the hub is unreachable" if _is_connection_error(exc) else "the hub refused it"
        raise HubError(
            f"push of {what} to {url}/{repo_id} failed: {reason} ({type(exc).__name__}: {detail}); nothing was changed"
        ) from None
    return getattr(commit, "commit_url", None)


def hub_endpoint(endpoint: str | None = None) -> str:
    """`endpoint`, else `HF_ENDPOINT` (read now, not at import), else huggingface.co."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _is_connection_error(exc: BaseException) -> bool:
    names = {t.__name__ for t in type(exc).__mro__}
    return isinstance(exc, ConnectionError | TimeoutError) or bool(
        names & {"ConnectError", "ConnectTimeout", "TimeoutException", "NetworkError", "OfflineModeIsEnabled"}
    )


def push_to_hub(
    tracker: Tracker,
    repo_id: str,
    token: str,
    *,
    alias: str = "champion",
    endpoint: str | None = None,
    private: bool | None = None,
) -> HubPush:
    """Create `repo_id` if needed and upload the folder; tag the version `qaflow.hub.*` only after success."""
    check_repo_id(repo_id)
    url = hub_endpoint(endpoint)
    with tempfile.TemporaryDirectory(prefix="qaflow-hub-push-") as tmp:
        folder = build_hub_folder(tracker, Path(tmp) / "upload", alias=alias, repo_id=repo_id)
        commit_url = upload(folder, repo_id, token, url, private, f"qaflow: {folder.model} v{folder.version} ({alias})",
                            what=f"{folder.model} v{folder.version}")  # fmt: skip
    user, at = getpass.getuser(), datetime.now(UTC).isoformat(timespec="seconds")
    values = {"repo_id": repo_id, "endpoint": url, "commit_url": commit_url, "by": user, "at": at}
    tracker.tag_version(folder.version, {f"{tag.HUB}.{key}": str(value) for key, value in values.items() if value})
    return HubPush(repo_id, folder.model, folder.version, url, commit_url, folder.files)
