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
