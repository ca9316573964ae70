import json
import subprocess
import sys

import pytest

from cli_helpers import run



def test_list_json_has_the_documented_fields(capsys):
    code, out, err = run(capsys, "list", "resnet50,vgg16", "--json")
    assert code == 0 and err == ""
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["resnet50", "vgg16"]
    assert rows[0]["family"] == "resnet" and rows[0]["input_size"] == 224
    assert (rows[0]["params"], rows[0]["macs"]) == (25557032, 4089184256)
    assert (rows[1]["params"], rows[1]["macs"]) == (138357544, 15470264320)


def test_list_table(capsys):
    code, out, _ = run(capsys, "list", "inception*")
    assert code == 0
    assert "27,161,264" in out and "5.713" in out and "299" in out


@pytest.mark.parametrize("argv, needle", [
    (["list", "nosuchnet"], "unknown model 'nosuchnet'"),
    (["list", "resnet5"], "did you mean resnet50"),
    (["list", "--bogus"], "No such option"),
])
def test_bad_input_is_one_line_and_nonzero(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code != 0
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_version(capsys):
    import convbench
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"convbench {convbench.__version__}"


def test_python_dash_m_and_console_script_agree():
    proc = subprocess.run([sys.executable, "-m", "convbench", "list", "alexnet", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["params"] == 61100840
    bad = subprocess.run([sys.executable, "-m", "convbench", "list", "nosuchnet"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1


def test_h_is_help_and_bad_batch_lists_are_refused(capsys):
    code, out, err = run(capsys, "profile", "-h")
    assert code == 0 and "--batch-size" in out and "<bool>" not in out
    code, out, err = run(capsys, "profile", "-b", "1,,2", "--metrics", "static")
    assert code == 2 and err.strip() == "error: --batch-size must be integers separated by commas, got '1,,2'"


def test_list_has_the_paper_column(capsys):
    code, out, err = run(capsys, "list", "resnet50")
    assert code == 0 and "paper" in out.splitlines()[1] and "He et al." in out


def test_the_ci_examples_are_valid_yaml():
    """A user copies them as they are: `--prove : ...` unquoted is not YAML (it was, for a while, in one of them)."""
    from pathlib import Path

    import yaml
    for path in sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yml")):
        data = yaml.safe_load(path.read_text())
        assert isinstance(data, dict) and data, path.name
