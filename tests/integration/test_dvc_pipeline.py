"""The real qaflow DVC pipeline (dvc.yaml: prepare -> featurize) in a temp repository, through tasks.versioning.

The temp repo holds copies of dvc.yaml, params.yaml (max_seq_length 64, the offline `minilm` tokenizer), the
`tasks`/`flows` packages (the stage commands run `python -m tasks.pipeline...` from the repo root, so the copies
are what runs) and a tiny SQuAD v1.1 file cut from the bundled sample. One base repo is reproduced once per module;
tests that change it work on a copy (cache and outputs included).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tasks import versioning

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:_NoneStep.value:DeprecationWarning")]

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample" / "squad-v1.1-sample-train.json"
PREPARED, FEATURES = "data/prepared", "data/features"


def tiny_squad(paragraphs: slice, questions: int = 3) -> dict:
    """A few paragraphs of the bundled sample's first article, each with its first `questions` questions."""
    source = json.loads(SAMPLE.read_text(encoding="utf-8"))
    article = source["data"][0]
    kept = [{**p, "qas": p["qas"][:questions]} for p in article["paragraphs"][paragraphs]]
    return {"version": source.get("version", "1.1"), "data": [{"title": article["title"], "paragraphs": kept}]}


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def set_param(root: Path, section: str, key: str, value: object) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*"))}


def build_repo(root: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("tasks", "flows"):
        shutil.copytree(REPO / package, root / package, ignore=ignore)
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(
        train_file="data/raw/train.json", validation_file="data/raw/dev.json",
        max_train_samples=None, max_eval_samples=None,
    )  # fmt: skip
    params["model"]["model_name_or_path"] = "minilm"
    params["features"].update(max_seq_length=64, doc_stride=16, pad_to_max_length=True, preprocessing_num_workers=1)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_json(root / "data/raw/train.json", tiny_squad(slice(0, 3)))
    write_json(root / "data/raw/dev.json", tiny_squad(slice(3, 4)))
    versioning.ensure_dvc_repo(root)
    return root


@pytest.fixture(scope="module")
def dvc_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    base = tmp_path_factory.mktemp("dvc-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DVC_SITE_CACHE_DIR", str(base / "site"))
        mp.setenv("DVC_GLOBAL_CONFIG_DIR", str(base / "global"))
        mp.setenv("DVC_SYSTEM_CONFIG_DIR", str(base / "system"))
        mp.setenv("DVC_NO_ANALYTICS", "1")
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, dvc_env: None) -> tuple[Path, versioning.StageRun]:
    """The pipeline repo after its first reproduce (read-only for tests: copy it before changing anything)."""
    root = build_repo(tmp_path_factory.mktemp("pipeline") / "repo")
    return root, versioning.reproduce(root)


@pytest.fixture
def work(base: tuple[Path, versioning.StageRun], tmp_path: Path) -> Path:
    """A private copy of the reproduced repo (outputs, dvc.lock and cache included)."""
    return Path(shutil.copytree(base[0], tmp_path / "repo", symlinks=True))


def test_first_reproduce_runs_both_stages_then_skips_both(base: tuple[Path, versioning.StageRun]) -> None:
    root, first = base
    assert first.ran == ("prepare", "featurize") and first.skipped == ()
    assert {"train.json", "eval.json", "report.json"} <= {p.name for p in (root / PREPARED).iterdir()}
    report = json.loads((root / FEATURES / "report.json").read_text())
    assert report["settings"]["max_seq_length"] == 64 and report["train"]["examples"] == 9
    version = versioning.data_version(root)
    assert set(version.outs) == {PREPARED, FEATURES} and all(h.endswith(".dir") for h in version.outs.values())
    assert version.stages["featurize"].params["features.max_seq_length"] == 64
    assert version.stages["prepare"].params["data.train_file"] == "data/raw/train.json"

    again = versioning.reproduce(root)
    assert again.ran == () and again.restored == () and again.skipped == ("prepare", "featurize")
    assert versioning.data_version(root) == version  # stable across runs


def test_doc_stride_change_reruns_only_featurize(work: Path) -> None:
    before = versioning.data_version(work)
    set_param(work, "features", "doc_stride", 32)
    run = versioning.reproduce(work)
    assert run.ran == ("featurize",) and run.skipped == ("prepare",)
    assert run.reasons["featurize"] == ["param features.doc_stride: 16 -> 32"]
    after = versioning.data_version(work)
    assert after.outs[PREPARED] == before.outs[PREPARED]
    assert after.outs[FEATURES] != before.outs[FEATURES] and after.id != before.id
    assert json.loads((work / FEATURES / "report.json").read_text())["settings"]["doc_stride"] == 32

    set_param(work, "features", "doc_stride", 16)  # back: same features as the first run, same data version
    back = versioning.reproduce(work)
    assert back.restored == ("featurize",) and back.ran == ()  # from DVC's run cache, no re-tokenising
    assert versioning.data_version(work).id == before.id


def touch(path: Path) -> None:
    """A code change that changes no behaviour (a trailing comment): DVC sees new bytes."""
    path.write_text(path.read_text(encoding="utf-8") + "# touched\n", encoding="utf-8")


def test_post_processing_code_change_leaves_the_data_stages_and_the_version_alone(work: Path) -> None:
    before = versioning.data_version(work)
    not_data = ("tasks/core/postprocess/selection.py", "tasks/families/extractive.py", "tasks/core/specs.py",
                "flows/cli.py")  # fmt: skip
    for module in not_data:
        touch(work / module)
    assert versioning.changed_stages(work) == {}  # `dvc status` is clean
    run = versioning.reproduce(work)
    assert run.ran == () and run.skipped == ("prepare", "featurize")
    assert versioning.data_version(work) == before


def test_feature_code_change_reruns_featurize_only(work: Path) -> None:
    before = versioning.data_version(work)
    touch(work / "tasks/families/extractive_features.py")
    assert set(versioning.changed_stages(work)) == {"featurize"}
    run = versioning.reproduce(work)
    assert run.ran == ("featurize",) and run.skipped == ("prepare",)
    after = versioning.data_version(work)
    assert after.outs == before.outs and after.id == before.id  # a comment: the same features, the same version
    assert after.stages["featurize"].deps != before.stages["featurize"].deps


def test_raw_data_change_reruns_both_stages(work: Path) -> None:
    before = versioning.data_version(work)
    write_json(work / "data/raw/train.json", tiny_squad(slice(0, 2)))
    assert set(versioning.changed_stages(work)) == {"prepare"}  # featurize changes once prepare's output does
    run = versioning.reproduce(work)
    assert run.ran == ("prepare", "featurize")
    after = versioning.data_version(work)
    assert after.outs[PREPARED] != before.outs[PREPARED] and after.outs[FEATURES] != before.outs[FEATURES]
    assert json.loads((work / FEATURES / "report.json").read_text())["train"]["examples"] == 6


def test_push_then_pull_restores_identical_data(work: Path, tmp_path: Path) -> None:
    versioning.ensure_dvc_repo(work, tmp_path / "remote")
    version = versioning.data_version(work)
    digests = {out: tree_digest(work / out) for out in (PREPARED, FEATURES)}
    pushed = versioning.push(work)
    assert pushed == 7  # 3 + 2 files and the 2 directory manifests
    shutil.rmtree(work / ".dvc" / "cache")
    for out in (PREPARED, FEATURES):
        shutil.rmtree(work / out)
    assert versioning.pull(work) == pushed
    assert {out: tree_digest(work / out) for out in (PREPARED, FEATURES)} == digests
    assert versioning.data_version(work) == version
    assert versioning.reproduce(work).ran == ()


def test_a_failed_stage_leaves_params_and_data_as_they_were(work: Path, tmp_path: Path) -> None:
    """An override whose featurize stage fails (a model directory without a tokenizer): params.yaml keeps its
    bytes, comments included, and data/ is checked out again from the DVC cache as dvc.lock records it."""
    from tasks.pipeline.data_stages import run_data_stages
    from tasks.versioning import StageFailedError

    params = work / "params.yaml"
    params.write_text("# the user's own comment\n" + params.read_text(), encoding="utf-8")
    before = {"params": params.read_bytes(), "lock": (work / "dvc.lock").read_bytes()}
    outputs = {name: tree_digest(work / name) for name in (PREPARED, FEATURES)}
    empty_model = tmp_path / "no-tokenizer"
    empty_model.mkdir()
    with pytest.raises(StageFailedError) as failed:
        run_data_stages(work, params, {"model.model_name_or_path": str(empty_model), "data.max_train_samples": 2})
    assert failed.value.stage == "featurize"
    assert params.read_bytes() == before["params"] and (work / "dvc.lock").read_bytes() == before["lock"]
    assert {name: tree_digest(work / name) for name in (PREPARED, FEATURES)} == outputs
    assert versioning.changed_stages(work) == {}


def _commands_in_session(session: int) -> list[str]:
    """Command lines of the live processes of a session (the victim's process group and its children)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if os.getsid(int(cmdline.parent.name)) == session:
                found.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.reliability
def test_a_reproduce_killed_inside_featurize_reruns_to_the_uninterrupted_result(work: Path, tmp_path: Path) -> None:
    """SIGKILL the whole `reproduce` (DVC and the stage command) while featurize runs; a plain re-run gives the
    dvc.lock entry and data/features of a run that was never interrupted."""
    set_param(work, "features", "doc_stride", 24)
    reference = Path(shutil.copytree(work, tmp_path / "reference", symlinks=True))
    versioning.reproduce(reference)
    runner = f"from pathlib import Path; from tasks.versioning import reproduce; reproduce(Path({str(work)!r}))"
    env = {**os.environ, "PYTHONPATH": str(work), "TOKENIZERS_PARALLELISM": "false"}
    victim = subprocess.Popen([sys.executable, "-c", runner], cwd=work, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while not any("tasks.pipeline.featurize" in cmd for cmd in _commands_in_session(victim.pid)):
        assert victim.poll() is None and time.monotonic() < deadline, "reproduce ended before it could be killed"
        time.sleep(0.02)
    time.sleep(0.5)  # inside the stage command, not at its first instruction
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert "featurize" in versioning.changed_stages(work), "the killed run must not look finished"

    again = versioning.reproduce(work)
    assert "featurize" in again.ran
    locked = versioning.data_version(work)
    assert locked.outs == versioning.data_version(reference).outs
    assert tree_digest(work / FEATURES) == tree_digest(reference / FEATURES)
    assert versioning.changed_stages(work) == {}
