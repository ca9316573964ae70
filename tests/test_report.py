"""`convbench report` renders every plot from a small results folder the test makes itself."""
import sys

import pytest

import convbench
from cli_helpers import run
from convbench.run.compare import compare
from convbench.run.config import TrainConfig
from convbench.run.train import run_train

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    convbench.profile("resnet18,alexnet", batch_sizes=[1, 2], iters=2, warmup=0, input_size=64, cpu_memory=False,
                              out=root / "profile")
    compare("reduction", shape=(8, 9, 9), pairs=6, warmup=0, out=root / "compare")
    run_train(TrainConfig(arch="resnet18", steps=4, batch_size=8, input_size=32, out=root / "train"))
    return root


def test_report_renders_every_plot(results, capsys):
    code, out, err = run(capsys, "report", str(results))
    assert code == 0, err
    for name in ("macs_vs_latency", "throughput_vs_batch", "zoo_overview", "roofline", "compare_ratios", "training_curves"):
        data = (results / f"{name}.png").read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name
    page = (results / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6  # self-contained: every image embedded
    assert "Environment" in page and "torch" in page and "resnet18" in page
    summary = (results / "report.md").read_text()
    assert "![roofline](roofline.png)" in summary and "| model |" in summary
    # numbers right-aligned with thousands separators, text left-aligned, each run's environment shown
    assert "<td class='num'>11,689,512</td>" in page and "<td class='text'>resnet18</td>" in page
    assert "<td class='text'>profile</td>" in page  # the folder each row came from
    # each run's environment: a row of a short table, the raw env.json folded away
    assert page.count("<details class='env'><summary>") == 3
    for where in ("profile", "compare", "train"):
        assert f"<summary>{where}: env.json</summary>" in page
        assert f"<tr><td class='text'>{where}</td><td class='text'>" in page
    # every device gets its measured ceilings in the roofline, the CPU included, and the caption names their kernels
    assert "compute ceiling set by " in summary and "bandwidth by " in summary
    assert "<th>device_ratio</th>" not in page and "<th>gpu_busy</th>" not in page  # no empty GPU-only columns on a CPU
    assert "<meta name='viewport'" in page


def test_report_flag_on_compare(tmp_path, capsys):
    code, out, err = run(capsys, "compare", "grouped", "--shape", "64,7,7", "--pairs", "6", "--warmup", "0",
                         "--out", str(tmp_path), "--report")
    assert code == 0, err
    assert (tmp_path / "compare_ratios.png").read_bytes().startswith(PNG) and (tmp_path / "report.html").exists()


@pytest.mark.parametrize("make, needle", [
    (lambda p: p / "missing", "is not a folder"),
    (lambda p: p, "holds no convbench results"),
])
def test_bad_folders_are_one_line(tmp_path, capsys, make, needle):
    code, _, err = run(capsys, "report", str(make(tmp_path)))
    assert code == 2 and needle in err and len(err.splitlines()) == 1


def test_without_matplotlib_it_says_how_to_install(results, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    code, _, err = run(capsys, "report", str(results))
    assert code == 2 and 'pip install "convbench[report]"' in err and len(err.splitlines()) == 1


def test_two_runs_are_told_apart_and_one_batch_size_draws_no_throughput_curve(tmp_path, capsys):
    for run_name in ("first", "second"):
        convbench.profile("resnet18,alexnet", iters=2, warmup=0, input_size=64, cpu_memory=False,
                                  out=tmp_path / run_name)
    code, out, err = run(capsys, "report", str(tmp_path))
    assert code == 0, err
    assert not (tmp_path / "throughput_vs_batch.png").exists()  # one batch size a run: no curve to draw
    page = (tmp_path / "report.html").read_text()
    assert "colour: the run, marker: the batch size" in page and "one bar per run" in page
    figures = len(list(tmp_path.glob("*.png")))
    assert figures == 3  # overview, MACs vs latency, roofline: one batch size draws no throughput curve
    assert " ".join(out.split()).endswith(f"({figures} figures, 1 table), PNGs and report.md in {tmp_path}"), out
    from convbench.analysis.report import make_report
    report = make_report(tmp_path)
    assert [f.name for f in report.figures] == ["macs_vs_latency", "roofline", "zoo_overview"]


def test_report_out_and_an_unwritable_folder(results, tmp_path, capsys, monkeypatch):
    code, out, err = run(capsys, "report", str(results), "--out", str(tmp_path / "elsewhere"))
    assert code == 0, err and (tmp_path / "elsewhere" / "report.html").exists()
    import convbench.results.folders as outdirs

    def read_only(path):
        raise convbench.errors.UserError(f"cannot write to output folder {path}: Read-only file system")
    monkeypatch.setattr(outdirs, "prove_writable", read_only)
    code, out, err = run(capsys, "report", str(results))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.strip() == (f"error: cannot write to output folder {results}: Read-only file system; write the report "
                           "elsewhere with --out DIR")


def test_one_figure_is_said_in_the_singular(tmp_path, capsys):
    run_train(TrainConfig(arch="resnet18", steps=2, batch_size=2, input_size=32, out=tmp_path))
    code, out, err = run(capsys, "report", str(tmp_path))
    assert code == 0 and "(1 figure, 1 table)" in out
