import pytest

from convbench.cli.main import main


def run(capsys, *argv):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def run_quietly(*argv) -> int:
    """Run the CLI in-process where no capsys is at hand; returns the exit code."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    return exit_info.value.code


def git(repo, *args: str) -> None:
    """git in a scratch repository of a test, as a fixed author."""
    import subprocess
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)


def team_package(repo, files: dict[str, str]) -> None:
    """A team's repository with the package `teamnet` (its `files`: name -> source), committed on main."""
    (repo / "teamnet").mkdir(parents=True)
    (repo / "teamnet" / "__init__.py").write_text("")
    for name, text in files.items():
        (repo / "teamnet" / name).write_text(text)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "the team's network")
