"""A DVC repository: set up (DVC initialised, analytics off, the default local remote `qaflow-local`) and opened
for one operation (in its directory, with qaflow's console rules)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from contextlib import chdir, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.versioning.console import dvc_console, quiet_ssh
from tasks.versioning.errors import VersioningError
from tasks.versioning.lock import flatten

if TYPE_CHECKING:
    from dvc.repo import Repo

log = logging.getLogger(__package__)  # "tasks.versioning", as before the package was split

REMOTE_NAME = "qaflow-local"
DEFAULT_REMOTE_DIR = ".dvcstore"  # inside the checkout, git-ignored (/.dvcstore/ in .gitignore)


def _git_root(root: Path) -> Path | None:
    for directory in (root, *root.parents):
        if (directory / ".git").exists():
            return directory
    return None


def ensure_dvc_repo(root: Path, remote_dir: Path | None = None) -> None:
    """Initialise DVC in `root` if needed (git or not) and configure the default local remote `qaflow-local`.

    Never touches the git index: new files (.dvc/config, .dvc/.gitignore, .dvcignore) are left for you to commit.
    `remote_dir` None keeps an existing `qaflow-local` remote, or else adds `<root>/.dvcstore` (stored relative
    to the repository so the config works on any machine). Analytics are disabled in the repository config.
    """
    from dvc.repo import Repo

    root = root.resolve()
    if not root.is_dir():
        raise VersioningError(f"{root}: not a directory")
    if not (root / Repo.DVC_DIR).is_dir():
        # no_scm init, then switch git on: `dvc init` in a git repo would `git add` its files.
        Repo.init(str(root), no_scm=True).close()
        log.info("initialised DVC in %s", root)
    git = _git_root(root)
    with Repo(str(root), uninitialized=True) as repo:
        current = repo.config.load_one("repo")
        wanted = _wanted_config(current, root, remote_dir, git is not None)
        if _canonical(wanted) != _canonical(current):  # a rewrite drops the file's comments: only on change
            with repo.config.edit() as conf:
                conf.clear()
                conf.update(wanted)
    if git is not None and git != root:
        log.warning("%s is inside the git repository %s: DVC treats it as a sub-repository", root, git)
    with Repo(str(root)):  # opening with git writes .dvc/.gitignore (cache, tmp, config.local)
        pass


def _canonical(conf: dict[str, Any]) -> dict[str, str]:
    """Config values as DVC writes them (configobj keeps strings: False and "false" are the same)."""
    return {k: str(v).lower() for k, v in flatten(conf).items() if v != {}}


def _wanted_config(current: dict[str, Any], root: Path, remote_dir: Path | None, git: bool) -> dict[str, Any]:
    from dvc.config_schema import RelPath

    conf = copy.deepcopy(current)
    core = conf.setdefault("core", {})
    core["analytics"] = False
    if git:
        core.pop("no_scm", None)
    else:
        core["no_scm"] = True
    remotes = conf.setdefault("remote", {})
    if remote_dir is not None or REMOTE_NAME not in remotes:
        target = Path(remote_dir).resolve() if remote_dir is not None else root / DEFAULT_REMOTE_DIR
        inside = target == root or root in target.parents  # relative to .dvc/: portable across machines
        remotes[REMOTE_NAME] = {**remotes.get(REMOTE_NAME, {}), "url": RelPath(target) if inside else str(target)}
        if remote_dir is not None or not core.get("remote"):
            core["remote"] = REMOTE_NAME
    return conf


@contextmanager
def open_repo(root: Path) -> Iterator[Repo]:
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    if not (root / Repo.DVC_DIR).is_dir():
        raise VersioningError(
            f"{root}: not a DVC repository (no .dvc/); run `dvc init` or tasks.versioning.ensure_dvc_repo"
        )
    with chdir(root), quiet_ssh(), dvc_console():  # DVC: targets and stage names relative to the working dir
        try:
            repo = Repo(str(root))
        except NotDvcRepoError as exc:
            raise VersioningError(f"{root}: not a DVC repository ({exc})") from exc
        try:
            yield repo
        finally:
            repo.close()
