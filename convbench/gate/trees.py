"""The two sides of an A/B run as scratch trees: the base revision's source and the candidate's, each with the
candidate's suite beside it, so that both run the same benchmark code against their own library code."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from convbench.errors import UserError

RECORD_DIR = "results/benchmarks"


def _git(repo: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120)
    except OSError as exc:
        raise UserError(f"git is needed to build the base revision: {exc}") from None
    if proc.returncode != 0:
        message = (proc.stderr.strip().splitlines() or ["git failed"])[-1]
        raise UserError(f"git {' '.join(args)}: {message}")
    return proc.stdout.strip()


def repo_root(path: Path) -> Path:
    return Path(_git(path, "rev-parse", "--show-toplevel"))


def default_base(repo: Path, record_dir: str = RECORD_DIR) -> str:
    """The last commit that changed the committed benchmark record: the code whose speed was last accepted.
    Slowdowns that creep in over many commits add up against it, where a merge base would let each one pass."""
    rev = _git(repo, "log", "-1", "--format=%H", "--", record_dir)
    if not rev:
        if _git(repo, "rev-parse", "--is-shallow-repository") == "true":
            raise UserError(f"this clone is shallow, so the last commit that changed {record_dir} is not in it; "
                            "clone with full history (actions/checkout: fetch-depth: 0) or pass --base REV")
        raise UserError(f"no commit has changed {record_dir}; save a record first or pass --base REV")
    return rev


def merge_base(repo: Path) -> tuple[str, str]:
    """(the merge base of HEAD and the default branch, that branch's name): what a pull request is judged against
    where no commit records accepted speed. The default branch is origin's HEAD, else the first of origin/main,
    origin/master, main, master that exists."""
    branches = []
    try:
        branches.append(_git(repo, "symbolic-ref", "--short", "refs/remotes/origin/HEAD"))
    except UserError:
        pass
    branches += ["origin/main", "origin/master", "main", "master"]
    for branch in branches:
        try:
            return _git(repo, "merge-base", "HEAD", branch), branch
        except UserError:
            continue
    raise UserError(f"{repo} has no default branch to take a merge base with (origin/main, main, ...): pass --base REV "
                    "(in a shallow CI clone, fetch with fetch-depth: 0)")


def resolve(repo: Path, rev: str) -> str:
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except UserError:
        raise UserError(f"--base {rev!r} is not a commit of {repo}") from None


def base_tree(repo: Path, rev: str, sources: tuple[str, ...], dest: Path) -> Path:
    """The base revision's `sources` (for example the package folder), exported without touching the checkout."""
    dest.mkdir(parents=True, exist_ok=True)
    present = [s for s in sources if _git(repo, "ls-tree", "--name-only", rev, "--", s)]
    if not present:  # all new in the candidate: every case is new, none a failure
        return dest
    archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", rev, "--", *present],
                             capture_output=True, timeout=300)
    if archive.returncode != 0:
        raise UserError(f"git archive {rev[:12]} failed: {archive.stderr.decode(errors='replace').strip()[-200:]}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True, timeout=300)
    return dest


def copy_paths(root: Path, paths: tuple[str, ...], dest: Path) -> Path:
    """The working tree's `paths` as they are now, uncommitted edits included (the candidate is what is on disk)."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for rel in paths:
        src = root / rel
        if not src.exists():
            raise UserError(f"{src} does not exist")
        target = dest / rel
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=ignore)
        else:
            shutil.copy2(src, target)
    return dest
