import json

import pytest

from convbench.analysis import baseline
from convbench.cli.main import main


def test_diff_names_model_metric_old_and_new():
    old = {"a": {"input_size": 224, "params": 10, "macs": 100, "acts": 5, "saved_bytes": 8, "saved_act_bytes": 4}, "gone": {}}
    new = {"a": {**old["a"], "macs": 200}, "fresh": {}}
    rows = baseline.diff(old, new)
    assert rows == [("a", "macs", 100, 200), ("fresh", "(model)", "absent", "new"), ("gone", "(model)", "present", "gone")]
    table = baseline.format_diff(rows)
    assert "macs" in table and "+100.00%" in table


def test_cli_check_fails_on_a_moved_count_and_update_accepts(tmp_path, capsys):
    path = tmp_path / "static.json"
    committed = baseline.load()
    baseline.save({"resnet18": {**committed["resnet18"], "macs": committed["resnet18"]["macs"] + 1}}, path)
    with pytest.raises(SystemExit) as exit_info:
        main(["baseline", "--arch", "resnet18", "--file", str(path)])
    out, _ = capsys.readouterr()
    assert exit_info.value.code == 1
    assert "resnet18" in out and "macs" in out and str(1814073344 + 1) in out and "--update" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["baseline", "--arch", "resnet18", "--file", str(path), "--update"])
    assert exit_info.value.code == 2  # a partial update would drop the other models: refused in one line
    baseline.save({"resnet18": committed["resnet18"]}, path)
    with pytest.raises(SystemExit) as exit_info:
        main(["baseline", "--arch", "resnet18", "--file", str(path)])
    assert exit_info.value.code == 0
    assert json.loads(path.read_text())["models"]["resnet18"]["params"] == 11689512
