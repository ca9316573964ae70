"""`convbench train` on the CPU: it learns, it reads real data layouts, DDP over gloo, and every bad-input path."""
import pickle
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from cli_helpers import run
from convbench.run.data import synthetic
from convbench.run.config import TrainConfig
from convbench.run.train import run_train



@pytest.fixture()
def user_nets(tmp_path, monkeypatch):
    (tmp_path / "trainnets.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn

        def small():
            return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(8, 10))

        class NaNNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(3, 10)
            def forward(self, x):
                return self.fc(x.mean((2, 3))) * float("nan")

        def nan_net():
            return NaNNet()
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "trainnets"
    sys.modules.pop("trainnets", None)


def test_synthetic_data_is_seeded_and_balanced():
    a, b = synthetic((3, 16, 16), seed=3), synthetic((3, 16, 16), seed=3)
    assert a.train_x.equal(b.train_x) and a.test_y.equal(b.test_y)
    assert a.train_x.shape == (2048, 3, 16, 16) and a.num_classes == 10
    assert set(a.train_y.tolist()) == set(range(10))


def test_short_run_learns(tmp_path):
    run = run_train(TrainConfig(arch="resnet18", steps=25, batch_size=32, input_size=32, out=tmp_path, log_every=5))
    row = run.frame.iloc[0]
    assert row.status == "ok" and row.lr == 0.02
    assert row.final_loss < 0.5 * row.first_loss
    assert row.heldout_acc_start < 0.2 < 0.4 < row.heldout_acc  # ten classes: chance is 0.1
    steps = pd.read_csv(tmp_path / "train_steps.csv")
    assert list(steps.step) == list(range(1, 26)) and "loss" in steps.columns
    assert row.peak_mem_train_bytes > 0 and row.images_per_s > 0


def test_cli_reads_cifar10_pickles(tmp_path, capsys, user_nets):
    folder = tmp_path / "cifar"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("data_batch_1", "data_batch_2", "test_batch"):
        batch = {b"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, 20).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    code, out, err = run(capsys, "train", "--arch", f"{user_nets}:small", "--steps", "4", "--batch-size", "8",
                         "--data", f"cifar10:{folder}", "--out", str(tmp_path / "o"))
    assert code == 0, err
    summary = pd.read_csv(tmp_path / "o" / "train.csv").iloc[0]
    assert summary.data == "cifar10" and summary.input_size == 224 and summary.status == "ok"


def test_cli_reads_an_image_folder(tmp_path, capsys, user_nets):
    from PIL import Image
    root = tmp_path / "imgs"
    for label, colour in (("cats", (200, 30, 30)), ("dogs", (30, 30, 200))):
        (root / label).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (40, 30), tuple(c + 5 * i for c in colour)).save(root / label / f"{i}.png")
    (root / "cats" / "notes.txt").write_text("not an image")
    code, _, err = run(capsys, "train", "--arch", f"{user_nets}:small", "--steps", "3", "--batch-size", "4",
                       "--data", f"folder:{root}", "--input-size", "24", "--out", str(tmp_path / "o"))
    assert code == 0, err
    summary = pd.read_csv(tmp_path / "o" / "train.csv").iloc[0]
    assert summary.data == "folder" and summary.input_size == 24


def test_ddp_over_gloo_with_two_processes(tmp_path, capsys, user_nets):
    code, out, err = run(capsys, "train", "--arch", f"{user_nets}:small", "--steps", "6", "--batch-size", "8",
                         "--input-size", "16", "--nproc-per-node", "2", "--out", str(tmp_path / "o"))
    assert code == 0, err
    runs = pd.read_csv(tmp_path / "o" / "train.csv")
    assert list(runs.nproc) == [1, 2] and set(runs.status) == {"ok"}
    ddp = runs.iloc[1]
    assert ddp.aggregate_images_per_s == pytest.approx(2 * ddp.images_per_s)
    assert ddp.scaling_efficiency == pytest.approx(ddp.aggregate_images_per_s / (2 * runs.iloc[0].images_per_s))
    steps = pd.read_csv(tmp_path / "o" / "train_steps.csv")
    assert len(steps[steps.nproc == 2]) == 6  # rank 0's steps, appended after the one-process run's


def test_compare_trains_both_sides_with_the_same_seed(tmp_path):
    run = run_train(TrainConfig(compare="googlenet", steps=2, batch_size=4, input_size=32, out=tmp_path))
    assert list(run.frame.run) == ["googlenet 5x5", "googlenet 3x3+3x3"]
    assert run.frame.first_loss.notna().all() and set(run.frame.status) == {"ok"}


def test_nan_loss_stops_with_one_line_and_keeps_rows(tmp_path, capsys, user_nets):
    code, _, err = run(capsys, "train", "--arch", f"{user_nets}:nan_net,resnet18", "--steps", "5", "--input-size", "16",
                       "--out", str(tmp_path / "o"))
    assert code == 1 and "loss became nan at step 1" in err and len(err.splitlines()) == 1  # a failed row: docs/runs.md
    assert len(pd.read_csv(tmp_path / "o" / "train_steps.csv")) == 1
    summary = pd.read_csv(tmp_path / "o" / "train.csv")
    assert list(summary.status) == ["diverged"]  # the sweep stopped: resnet18 was not started


@pytest.mark.parametrize("argv, needle", [
    (["--steps", "0"], "--steps must be at least 1"),
    (["--batch-size", "0"], "batch sizes must be positive"),
    (["--lr", "-1"], "--lr must be a positive number"),
    (["--data", "cifar10:/no/such/dir"], "is not a readable folder"),
    (["--data", "imagenet"], "unknown --data"),
    (["--compare", "vgg"], "unknown --compare"),
    (["--device", "cuda"], "no CUDA device"),
    (["--arch", "resnet5"], "did you mean resnet50"),
])
def test_bad_input_is_one_line(capsys, tmp_path, argv, needle):
    code, _, err = run(capsys, "train", "--out", str(tmp_path / "o"), *argv)
    assert code == 2 and needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_unreadable_cifar_folder_is_one_line(capsys, tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "data_batch_1").write_bytes(b"garbage")
    (tmp_path / "c" / "test_batch").write_bytes(b"garbage")
    code, _, err = run(capsys, "train", "--data", f"cifar10:{tmp_path / 'c'}", "--out", str(tmp_path / "o"))
    assert code == 2 and "cannot read CIFAR-10 batches" in err and len(err.splitlines()) == 1


def test_a_negative_warmup_is_named_as_itself():
    from convbench.errors import UserError
    from convbench.run.config import TrainConfig
    with pytest.raises(UserError, match="warmup_steps must be 0 or more, got -1"):
        TrainConfig(warmup_steps=-1).check()
