"""tasks.versioning on real DVC repositories in temp dirs, with tiny `python -c` stages (fast).

The qaflow pipeline itself (dvc.yaml's prepare/featurize) is exercised in tests/integration/test_dvc_pipeline.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from flows.retry import is_transient
from tasks import versioning
from tasks.versioning import RemoteConfigError, StageFailedError, VersioningError

pytestmark = pytest.mark.filterwarnings("ignore:_NoneStep.value:DeprecationWarning")  # DVC 3.67 + pygtrie

# Stage `a` doubles in.txt and records which python ran it; `b` appends a param to a.txt.
PIPELINE = {
    "stages": {
        "a": {
            "cmd": "python -c \"import sys; open('a.txt', 'w').write(open('in.txt').read() * 2);"
            " open('python.txt', 'w').write(sys.executable)\"",
            "deps": ["in.txt"],
            "params": ["p.x"],
            "outs": ["a.txt", {"python.txt": {"cache": False}}],
        },
        "b": {
            "cmd": "python -c \"import yaml; y = yaml.safe_load(open('params.yaml'))['p']['y'];"
            " open('b.txt', 'w').write(open('a.txt').read() + str(y))\"",
            "deps": ["a.txt"],
            "params": ["p.y"],
            "outs": ["b.txt"],
        },
    }
}


@pytest.fixture(autouse=True)
def isolated_dvc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """DVC's site cache and global/system config under a temp dir; no analytics."""
    base = tmp_path_factory.mktemp("dvc-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DVC_SITE_CACHE_DIR", str(base / "site"))
        mp.setenv("DVC_GLOBAL_CONFIG_DIR", str(base / "global"))
        mp.setenv("DVC_SYSTEM_CONFIG_DIR", str(base / "system"))
        mp.setenv("DVC_NO_ANALYTICS", "1")
        yield


def write_pipeline(root: Path, x: int = 1, y: int = 2) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dvc.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    set_params(root, x, y)
    (root / "in.txt").write_text("hi\n")
    return root


def set_params(root: Path, x: int, y: int) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump({"p": {"x": x, "y": y}}))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = write_pipeline(tmp_path / "repo")
    versioning.ensure_dvc_repo(root)
    return root


def read_config(root: Path) -> dict[str, dict[str, str]]:
    import configparser

    parser = configparser.ConfigParser()
    parser.read(root / ".dvc" / "config")
    return {s.strip("'"): dict(parser[s]) for s in parser.sections()}


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    return subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True).stdout


# ------------------------------------------------------------------------------------------ ensure_dvc_repo


def test_ensure_dvc_repo_without_git_configures_local_remote(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    root.mkdir()
    versioning.ensure_dvc_repo(root)
    config = read_config(root)
    assert config["core"] == {"analytics": "False", "no_scm": "True", "remote": "qaflow-local"}
    assert config['remote "qaflow-local"'] == {"url": "../.dvcstore"}  # relative to .dvc/: portable
    assert (root / ".dvcignore").exists()
    before = (root / ".dvc" / "config").read_bytes()
    (root / ".dvc" / "config").write_bytes(b"# kept\n" + before)
    versioning.ensure_dvc_repo(root)  # idempotent: nothing to change, file (and comment) untouched
    assert (root / ".dvc" / "config").read_bytes() == b"# kept\n" + before


def test_ensure_dvc_repo_with_git_leaves_the_index_alone(tmp_path: Path) -> None:
    root = tmp_path / "gitrepo"
    root.mkdir()
    git(root, "init", "-q")
    versioning.ensure_dvc_repo(root)
    assert "no_scm" not in read_config(root)["core"]
    assert {"/cache", "/config.local"} <= set((root / ".dvc" / ".gitignore").read_text().split())
    status = git(root, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert status and all(line.startswith("??") for line in status), status  # nothing staged
    assert "?? .dvc/config" in status and "?? .dvcignore" in status


def test_ensure_dvc_repo_explicit_remote_dir_becomes_default(tmp_path: Path, repo: Path) -> None:
    remote = tmp_path / "elsewhere" / "store"
    versioning.ensure_dvc_repo(repo, remote)
    config = read_config(repo)
    assert config['remote "qaflow-local"'] == {"url": str(remote)}  # outside the repo: absolute
    assert config["core"]["remote"] == "qaflow-local"
    versioning.ensure_dvc_repo(repo)  # None keeps the configured remote
    assert read_config(repo)['remote "qaflow-local"'] == {"url": str(remote)}


def test_ensure_dvc_repo_rejects_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(VersioningError, match="not a directory"):
        versioning.ensure_dvc_repo(tmp_path / "nope")


# ------------------------------------------------------------------------------------------ reproduce


def test_reproduce_runs_changed_stages_only(repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = versioning.reproduce(repo)
    assert first.ran == ("a", "b") and first.skipped == () and first.restored == ()
    assert (repo / "b.txt").read_text() == "hi\nhi\n2"
    assert Path((repo / "python.txt").read_text()).parent == Path(sys.executable).parent  # the venv's python

    caplog.set_level("INFO", logger="tasks.versioning")
    second = versioning.reproduce(repo)
    assert second.ran == () and second.skipped == ("a", "b")
    assert "a: unchanged, skipped" in caplog.text

    set_params(repo, x=1, y=3)
    assert versioning.changed_stages(repo) == {"b": ["param p.y: 2 -> 3"]}
    third = versioning.reproduce(repo)
    assert third.ran == ("b",) and third.skipped == ("a",)
    assert third.reasons == {"b": ["param p.y: 2 -> 3"]}
    assert (repo / "b.txt").read_text() == "hi\nhi\n3"
    assert versioning.changed_stages(repo) == {}


def test_reproduce_restores_from_run_cache(repo: Path) -> None:
    versioning.reproduce(repo)
    original = versioning.data_version(repo)
    set_params(repo, x=1, y=5)
    changed = versioning.reproduce(repo)
    assert changed.ran == ("b",)
    assert versioning.data_version(repo).id != original.id
    set_params(repo, x=1, y=2)  # back: DVC checks the earlier output out of its run cache
    back = versioning.reproduce(repo)
    assert back.restored == ("b",) and back.ran == () and back.changed == ("b",)
    assert versioning.data_version(repo) == original


def test_reproduce_uses_env_path_prefix(tmp_path: Path, repo: Path) -> None:
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    shim = fake_bin / "python"
    shim.write_text(f'#!/bin/sh\necho used >> "$DVC_ROOT/shim.log"\nexec {sys.executable} "$@"\n')
    shim.chmod(0o755)
    assert versioning.reproduce(repo, env_path_prefix=str(fake_bin)).ran == ("a", "b")
    assert (repo / "shim.log").read_text().split() == ["used", "used"]  # both stage commands found the shim
    shim.write_text("#!/bin/sh\necho fake python refuses >&2\nexit 7\n")
    set_params(repo, x=2, y=2)
    with pytest.raises(StageFailedError, match="fake python refuses") as info:
        versioning.reproduce(repo, env_path_prefix=str(fake_bin))
    assert info.value.stage == "a" and "exited with 7" in info.value.reason


def test_failing_stage_reports_its_name_and_output_tail(repo: Path) -> None:
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    spec["stages"]["b"]["cmd"] = (
        "python -c \"import sys; [print('line', i) for i in range(60)]; sys.exit('b broke: no answers')\""
    )
    (repo / "dvc.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(StageFailedError) as info:
        versioning.reproduce(repo)
    err = info.value
    assert err.stage == "b" and "exited with 1" in err.reason
    assert err.tail.splitlines()[-1] == "b broke: no answers"
    assert "line 59" in err.tail and "line 10\n" not in err.tail  # only the tail
    assert "stage 'b' failed" in str(err)
    assert (repo / "a.txt").exists()  # a ran before b failed


def test_bad_states_give_clear_errors(tmp_path: Path) -> None:
    plain = write_pipeline(tmp_path / "no-dvc")
    with pytest.raises(VersioningError, match="not a DVC repository"):
        versioning.reproduce(plain)
    with pytest.raises(VersioningError, match="run the pipeline first"):
        versioning.data_version(plain)
    empty = tmp_path / "empty"
    empty.mkdir()
    versioning.ensure_dvc_repo(empty)
    with pytest.raises(VersioningError, match=r"no dvc\.yaml"):
        versioning.reproduce(empty)
    with pytest.raises(VersioningError, match="run the pipeline first"):
        versioning.push(empty)
    (plain / "in.txt").unlink()
    versioning.ensure_dvc_repo(plain)
    with pytest.raises(StageFailedError, match="in.txt") as info:
        versioning.reproduce(plain)
    assert info.value.stage == "a"
    (empty / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    with pytest.raises(VersioningError, match="run the pipeline first"):
        versioning.data_version(empty)


# ------------------------------------------------------------------------------------------ data_version

LOCK = {
    "schema": "2.0",
    "stages": {
        "prepare": {
            "cmd": "python -m flows.cli stage prepare --out data/prepared",
            "deps": [{"path": "data/raw.json", "hash": "md5", "md5": "1" * 32, "size": 3}],
            "params": {"params.yaml": {"data": {"train_file": "data/raw.json", "max_train_samples": None}}},
            "outs": [{"path": "data/prepared", "hash": "md5", "md5": "a" * 32 + ".dir", "size": 9, "nfiles": 3}],
        },
        "featurize": {
            "cmd": "python -m flows.cli stage featurize",
            "deps": [{"path": "data/prepared", "hash": "md5", "md5": "a" * 32 + ".dir"}],
            "params": {"params.yaml": {"features": {"doc_stride": 128}, "model.model_name_or_path": "minilm"}},
            "outs": [{"path": "data/features", "hash": "md5", "md5": "b" * 32 + ".dir", "size": 5, "nfiles": 2}],
        },
    },
}


def test_data_version_reads_dvc_lock(tmp_path: Path) -> None:
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(LOCK))
    version = versioning.data_version(tmp_path)
    assert version.outs == {"data/prepared": "a" * 32 + ".dir", "data/features": "b" * 32 + ".dir"}
    assert version.stages["featurize"].params == {"features.doc_stride": 128, "model.model_name_or_path": "minilm"}
    assert version.stages["prepare"].params["data.max_train_samples"] is None
    assert version.stages["prepare"].deps == {"data/raw.json": "1" * 32}
    text = f"data/features {'b' * 32}.dir\ndata/prepared {'a' * 32}.dir\n"
    assert version.id == hashlib.sha256(text.encode()).hexdigest()[:12]
    assert version.as_tags()["data_version"] == version.id
    assert version.as_tags()["dvc.data/features"] == "b" * 32 + ".dir"
    assert versioning.data_version(tmp_path) == version  # stable

    LOCK["stages"]["featurize"]["outs"][0]["md5"] = "c" * 32 + ".dir"
    try:
        (tmp_path / "dvc.lock").write_text(yaml.safe_dump(LOCK))
        assert versioning.data_version(tmp_path).id != version.id
    finally:
        LOCK["stages"]["featurize"]["outs"][0]["md5"] = "b" * 32 + ".dir"


def test_combined_id_is_order_independent() -> None:
    a = versioning.combined_id({"x": "1", "y": "2"})
    assert a == versioning.combined_id({"y": "2", "x": "1"}) and len(a) == 12
    assert a != versioning.combined_id({"x": "1", "y": "3"})


# ------------------------------------------------------------------------------------------ push / pull


def test_push_then_pull_restores_identical_outputs(tmp_path: Path, repo: Path) -> None:
    versioning.ensure_dvc_repo(repo, tmp_path / "remote")
    versioning.reproduce(repo)
    version = versioning.data_version(repo)
    contents = {name: (repo / name).read_bytes() for name in ("a.txt", "b.txt")}
    assert versioning.push(repo) == 2
    assert versioning.push(repo) == 0  # already there
    shutil.rmtree(repo / ".dvc" / "cache")
    for name in contents:
        (repo / name).unlink()
    assert versioning.pull(repo) == 2
    assert {name: (repo / name).read_bytes() for name in contents} == contents
    assert versioning.data_version(repo) == version
    assert versioning.reproduce(repo).ran == ()


def test_push_without_remote_says_how_to_add_one(tmp_path: Path) -> None:
    root = write_pipeline(tmp_path / "r")
    versioning.ensure_dvc_repo(root)
    versioning.reproduce(root)
    config = root / ".dvc" / "config"
    config.write_text("[core]\n    no_scm = True\n    analytics = False\n")
    with pytest.raises(VersioningError, match="dvc remote add"):
        versioning.push(root)


def fresh_copy(repo: Path, target: Path) -> Path:
    """`repo` as a fresh clone has it: dvc.lock and the git-tracked files, no DVC cache, no cached outputs."""
    return Path(shutil.copytree(repo, target, ignore=shutil.ignore_patterns("cache", "tmp", "a.txt", "b.txt")))


def test_a_fresh_copy_pulls_the_outputs_from_the_remote_instead_of_running(tmp_path: Path, repo: Path) -> None:
    versioning.ensure_dvc_repo(repo, tmp_path / "remote")
    versioning.reproduce(repo)
    versioning.push(repo)
    fresh = fresh_copy(repo, tmp_path / "fresh")
    run = versioning.reproduce(fresh)
    assert run.pulled == ("a", "b") and run.ran == () and run.restored == ()
    assert {n: (fresh / n).read_bytes() for n in ("a.txt", "b.txt")} == {
        n: (repo / n).read_bytes() for n in ("a.txt", "b.txt")
    }
    assert versioning.data_version(fresh) == versioning.data_version(repo) and versioning.changed_stages(fresh) == {}


def test_a_remote_without_the_outputs_makes_the_stages_run(tmp_path: Path, repo: Path) -> None:
    versioning.reproduce(repo)
    fresh = fresh_copy(repo, tmp_path / "fresh")
    versioning.ensure_dvc_repo(fresh, tmp_path / "empty-remote")
    run = versioning.reproduce(fresh)
    assert run.ran == ("a", "b") and run.pulled == ()
    assert versioning.data_version(fresh) == versioning.data_version(repo)


def test_a_default_remote_that_does_not_exist_is_a_config_error_never_retried(tmp_path: Path, repo: Path) -> None:
    versioning.reproduce(repo)
    fresh = fresh_copy(repo, tmp_path / "fresh")
    config = fresh / ".dvc" / "config"
    config.write_text(config.read_text().replace("remote = qaflow-local", "remote = gone"))
    with pytest.raises(RemoteConfigError, match="DVC remote 'gone'") as failed:
        versioning.reproduce(fresh)
    assert "\n" not in str(failed.value) and not is_transient(failed.value)
    assert not (fresh / "a.txt").exists()


CONSOLE_SCRIPT = """
import logging, sys
from pathlib import Path
logging.basicConfig(level=logging.INFO, stream=sys.stderr)  # as `qaflow` sets up its console
from tasks import versioning
versioning.reproduce(Path(sys.argv[1]))
"""


def test_each_dvc_line_once_and_missing_cache_explained_once(tmp_path: Path, repo: Path) -> None:
    """On a fresh clone whose remote lacks the outputs (the stages run), the console has every DVC line once and
    DVC's missing-cache warning (one per fetch DVC tries) as one explained line."""
    versioning.reproduce(repo)
    fresh = fresh_copy(repo, tmp_path / "fresh")
    versioning.ensure_dvc_repo(fresh, tmp_path / "empty-remote")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", CONSOLE_SCRIPT, str(fresh)], capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (done.stdout + done.stderr).splitlines()
    running = [line for line in lines if "Running stage 'a'" in line]
    assert len(running) == 1, lines
    assert not any("Some of the cache files" in line for line in lines), lines
    noted = [line for line in lines if "neither in the local cache nor on DVC remote 'qaflow-local'" in line]
    assert len(noted) == 1 and "run again instead of pulling" in noted[0], lines
    assert "\x1b[" not in done.stdout + done.stderr
