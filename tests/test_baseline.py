"""`convbench baseline`: exact counts of zoo models and a user's own against a committed file; --update merges what it
counted and keeps every other entry; the file is written whole or not at all."""
import json
import textwrap

import pytest

from cli_helpers import run
from convbench.analysis import baseline


def test_diff_names_model_metric_old_and_new():
    old = {"a": {"input_size": 224, "params": 10, "macs": 100, "acts": 5, "saved_bytes": 8, "saved_act_bytes": 4}, "gone": {}}
    new = {"a": {**old["a"], "macs": 200}, "fresh": {}}
    rows = baseline.diff(old, new)
    assert rows == [("a", "macs", 100, 200), ("fresh", "(model)", "absent", "new"), ("gone", "(model)", "present", "gone")]
    table = baseline.format_diff(rows)
    assert "macs" in table and "+100.00%" in table


def test_a_moved_count_fails_with_the_table_and_update_merges_keeping_other_models(tmp_path, capsys):
    path = tmp_path / "static.json"
    committed = baseline.load()
    baseline.save({"resnet18": {**committed["resnet18"], "macs": committed["resnet18"]["macs"] + 1},
                   "alexnet": committed["alexnet"]}, path)
    code, out, err = run(capsys, "baseline", "--arch", "resnet18", "--file", str(path))
    assert code == 1
    assert "resnet18" in out and "macs" in out and str(1814073344 + 1) in out and "--update" in out
    code, out, err = run(capsys, "baseline", "--arch", "resnet18", "--file", str(path), "--update")
    assert code == 0 and "1 model written" in out and "1 other model kept as they were" in out
    saved = json.loads(path.read_text())["models"]
    assert saved["resnet18"]["macs"] == 1814073344 and saved["alexnet"] == committed["alexnet"]
    assert run(capsys, "baseline", "--arch", "resnet18,alexnet", "--file", str(path))[0] == 0


@pytest.fixture()
def team_repo(tmp_path, monkeypatch):
    """A team's repository with its own network and its settings in pyproject.toml."""
    (tmp_path / "teamnet.py").write_text(textwrap.dedent('''
        import os
        from torch import nn

        def build():
            width = int(os.environ.get("TEAMNET_WIDTH", "16"))
            return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(width, 5))
    '''))
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent('''
        [project]
        name = "teamnet"

        [tool.convbench]
        arch = ["teamnet:build"]
        input-shape = [1, 32, 48]
        baseline = "tests/convbench-baseline.json"
    '''))
    monkeypatch.chdir(tmp_path)
    from convbench.cli import project
    project._settings.cache_clear()
    yield tmp_path
    project._settings.cache_clear()


def test_a_team_keeps_its_own_model_in_its_own_baseline_with_a_bare_command(team_repo, capsys, monkeypatch):
    code, out, err = run(capsys, "baseline", "--update")
    assert code == 0, err
    saved = json.loads((team_repo / "tests" / "convbench-baseline.json").read_text())["models"]
    # conv 1*16*9 + 16, linear 16*5 + 5: 245 params; MACs per image 32*48*16*9 + 16*5
    assert saved["teamnet:build"]["params"] == 245 and saved["teamnet:build"]["macs"] == 32 * 48 * 16 * 9 + 80
    assert saved["teamnet:build"]["input_shape"] == [1, 32, 48]
    assert run(capsys, "baseline")[0] == 0
    monkeypatch.setenv("TEAMNET_WIDTH", "24")  # a stage widened
    code, out, err = run(capsys, "baseline")
    assert code == 1 and "teamnet:build" in out and "params" in out and "macs" in out


def test_a_baseline_file_convbench_did_not_write_is_refused_and_kept(tmp_path, capsys):
    path = tmp_path / "other.json"
    path.write_text('{"models": {"x": [1, 2]}}')
    code, out, err = run(capsys, "baseline", "--arch", "alexnet", "--file", str(path), "--update")
    assert code == 2 and "is not a convbench baseline" in err and path.read_text() == '{"models": {"x": [1, 2]}}'


@pytest.mark.parametrize("line, said", [
    ("arch = 5", "arch = 5 is not text or a list of text"),
    ("baseline = 5", "baseline = 5 is not a path as text"),
    ('prove-factor = "abc"', "prove-factor = 'abc' is not a number"),
    ("fail-above = [1]", "fail-above = [1] is not a percentage as text, such as \"20%\""),
    ("repeat = 2.5", "repeat = 2.5 is not a whole number"),
    ("input-shape = [3, 0, 32]", None),
    ("arch = []", "arch = [] is not text or a list of text"),
    ('arch = "alexnet,,vgg11"', None),
    ("basline = 'x.json'", "has no setting 'basline'; did you mean 'baseline'?"),
])
def test_a_project_setting_of_the_wrong_type_or_range_is_one_line(tmp_path, capsys, monkeypatch, line, said):
    (tmp_path / "pyproject.toml").write_text(f"[tool.convbench]\n{line}\n")
    monkeypatch.chdir(tmp_path)
    from convbench.cli import project
    project._settings.cache_clear()
    try:
        for command in (["baseline"], ["gate", "--out", str(tmp_path / "g")]):
            code, out, err = run(capsys, *command)
            assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), (command, err)
            if said:
                assert said in err and str(tmp_path / "pyproject.toml") in err, err
            elif "input-shape" in line:
                assert err == "error: --input-shape is C,H,W with three positive integers\n"
            else:
                assert err == "error: --arch has an empty item: 'alexnet,,vgg11'\n"
    finally:
        project._settings.cache_clear()
