"""Only what pyproject.toml cannot say: a wheel records the commit it was built from (convbench/_commit.txt), so
that rows measured by an installed, non-editable convbench still name their source."""
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithCommit(build_py):
    def run(self) -> None:
        super().run()
        try:
            commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent,
                                    capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            commit = ""
        target = Path(self.build_lib) / "convbench" / "_commit.txt"
        if target.parent.is_dir():
            target.write_text(commit + "\n")


setup(cmdclass={"build_py": BuildWithCommit})
