"""`convbench profile` end to end on the CPU, plus the memory counters and every bad-input path."""
import csv
import json
import sys
import textwrap

import pandas as pd
import pytest
import torch

import os

import convbench
from convbench.run.config import ProfileConfig
from convbench.run.profile import ProfilePlan
from cli_helpers import run
from convbench.measure.complexity import zoo_model_on_meta, materialize
from convbench.measure.memory import count_saved_bytes
from convbench.results.schema import PROFILE_COLUMNS



@pytest.fixture()
def custom_models(tmp_path, monkeypatch):
    """A module of user networks for --arch package.module:function."""
    (tmp_path / "usernets.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn

        def tiny():
            # conv 3->8 3x3 (pad 1) on 16x16, relu, global pool, linear 8->4
            return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

        class FailsAtBatch(nn.Module):
            def __init__(self, limit, exc):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 1)
                self.limit, self.exc = limit, exc
            def forward(self, x):
                if x.shape[0] > self.limit and x.device.type != "meta":
                    raise self.exc
                return self.conv(x).mean((2, 3))

        def ooms_above_2():
            return FailsAtBatch(2, RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"))

        def interrupts():
            return FailsAtBatch(0, KeyboardInterrupt())

        def not_a_module_builder():
            raise ValueError("broken builder")
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "usernets"
    sys.modules.pop("usernets", None)


def test_profile_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "profile", "--arch", "resnet18,alexnet", "--batch-size", "1,2", "--iters", "2",
                            "--warmup", "1", "--out", str(out), "--format", "csv,json,md", "--by-layer")
    assert code == 0, err
    with open(out / "profile.csv") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == list(PROFILE_COLUMNS)
        rows = list(reader)
    assert [(r["model"], r["batch_size"]) for r in rows] == [("resnet18", "1"), ("resnet18", "2"), ("alexnet", "1"), ("alexnet", "2")]
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    r18 = rows[0]
    assert (int(r18["params"]), int(r18["macs"]), int(r18["acts"])) == (11689512, 1814073344, 2484712)
    assert int(r18["param_bytes"]) == 4 * 11689512
    assert (int(r18["saved_bytes"]), int(r18["saved_act_bytes"])) == (68991488, 22218240)
    # Activations scale with the batch; BN's per-channel saved mean and inverse std do not.
    assert int(rows[1]["saved_act_bytes"]) == 44398080
    assert int(rows[2]["macs"]) == 714188480
    for r in rows:  # measured, so only present and positive; the values belong to benchmarks
        assert float(r["latency_ms_p50"]) > 0 and int(r["timed_iters"]) == 2
        assert float(r["throughput_img_s"]) > 0 and int(r["peak_mem_train_bytes"]) >= int(r["saved_act_bytes"])
        assert r["device"] == "cpu" and r["dtype"] == "fp32" and r["torch"] == torch.__version__
        assert r["convbench"] == convbench.__version__ and r["threads"] == str(torch.get_num_threads())
    assert "aten::native_batch_norm:20" in r18["unsupported_ops"] and r18["counter"] == "dispatch"
    records = json.loads((out / "profile.json").read_text())
    assert records[0]["macs"] == 1814073344
    assert (out / "profile.md").read_text().startswith("| model |")
    env = json.loads((out / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["config"]["batch_sizes"] == [1, 2]
    layers = pd.read_csv(out / "layers.csv")
    whole = layers[(layers.model == "resnet18") & (layers.module == "(model)")].iloc[0]
    assert (whole.params, whole.macs) == (11689512, 1814073344)
    assert layers[(layers.model == "resnet18") & (layers.module == "fc")].iloc[0].macs == 512 * 1000
    # Profiler times exist for the measured batch (presence only: values are for benchmarks), no GPU time on a CPU.
    assert whole.cpu_time_us > 0 and pd.isna(whole.device_time_us)
    trace = json.loads((out / "trace_resnet18_b1.json").read_text())
    assert any(e.get("name") == "module::layer1" for e in trace["traceEvents"])
    assert "resnet18" in stdout and stdout.rstrip().endswith(f"4 rows: 4 ok -> {out}/profile.csv")


def test_static_metrics_library_call(custom_models):
    df = convbench.profile(f"{custom_models}:tiny,resnet50", batch_sizes=[1, 4], metrics="static", input_size=16)
    tiny = df[df.model == f"{custom_models}:tiny"].set_index("batch_size")
    assert list(tiny.status) == ["ok", "ok"]
    assert tiny.loc[1, "params"] == 3 * 8 * 9 + 8 + 8 * 4 + 4
    assert tiny.loc[1, "macs"] == 16 * 16 * 8 * 27 + 8 * 4
    assert tiny.loc[1, "acts"] == 16 * 16 * 8 + 4
    # Saved for backward: the input (conv), the relu output (relu, shared with the pool's input shape only),
    # the pooled/flattened features (linear) and the parameters the ops keep.
    assert tiny.loc[4, "saved_act_bytes"] == 4 * 4 * (3 * 16 * 16 + 8 * 16 * 16 + 8)
    assert df.latency_ms_p50.isna().all()  # static: nothing timed, nothing invented


def test_saved_bytes_are_device_independent():
    shape = (2, 3, 64, 64)
    on_meta = count_saved_bytes(zoo_model_on_meta("resnet18"), torch.zeros(shape, device="meta"))
    on_cpu = count_saved_bytes(materialize(zoo_model_on_meta("resnet18")), torch.zeros(shape))
    assert on_meta == on_cpu
    assert on_meta["saved_act_bytes"] < on_meta["saved_bytes"]


def test_bf16_on_cpu_counts_what_cpu_autocast_saves():
    df = convbench.profile("resnet18", batch_sizes=[2], dtype="bf16", metrics="all", iters=1, warmup=0,
                                   input_size=64, cpu_memory=False)
    row = df.iloc[0]
    assert row.status == "ok" and "cpu_memory off" in row.note  # said, not invented
    assert row.latency_ms_p50 > 0
    fp32 = count_saved_bytes(zoo_model_on_meta("resnet18"), torch.zeros(2, 3, 64, 64, device="meta"))
    assert (fp32["saved_bytes"], fp32["saved_act_bytes"]) == (50436608, 3663360)
    # bf16 weight copies halve the parameter part; CPU autocast keeps batch norm in fp32, so the
    # activations shrink far less than half.
    assert (row.saved_bytes, row.saved_act_bytes) == (25397376, 3005952)


def test_oom_and_errors_become_rows_and_the_sweep_goes_on(tmp_path, capsys, custom_models):
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "profile", "--arch", f"{custom_models}:ooms_above_2,{custom_models}:not_a_module_builder,"
                            "convbench.selfcheck.fixtures:tiny",
                            "--batch-size", "1,4", "--iters", "1", "--warmup", "0", "--input-size", "64", "--no-cpu-memory",
                            "--out", str(out))
    assert code == 1, err  # a builder that raises is a failed row; the OOM alone would be a result (exit 0)
    df = pd.read_csv(out / "profile.csv")
    status = dict(zip(zip(df.model, df.batch_size), df.status))
    assert status[(f"{custom_models}:ooms_above_2", 1)] == "ok"
    assert status[(f"{custom_models}:ooms_above_2", 4)] == "oom"
    assert status[(f"{custom_models}:not_a_module_builder", 1)] == "error"
    assert status[("convbench.selfcheck.fixtures:tiny", 1)] == status[("convbench.selfcheck.fixtures:tiny", 4)] == "ok"
    oom_row = df[(df.model == f"{custom_models}:ooms_above_2") & (df.batch_size == 4)].iloc[0]
    assert "out of memory" in oom_row.error and pd.isna(oom_row.latency_ms_p50)
    assert df[df.model == f"{custom_models}:not_a_module_builder"].iloc[0].error == \
        "building the model failed: ValueError: broken builder"


def test_interrupt_keeps_finished_rows(tmp_path, capsys, custom_models):
    out = tmp_path / "run"
    code, _, err = run(capsys, "profile", "--arch", f"resnet18,{custom_models}:interrupts,alexnet", "--iters", "1",
                       "--warmup", "0", "--input-size", "64", "--no-cpu-memory", "--out", str(out), "--format", "csv,json")
    assert code == 130
    assert "interrupted" in err
    df = pd.read_csv(out / "profile.csv")
    assert list(df.model) == ["resnet18"] and list(df.status) == ["ok"]
    assert json.loads((out / "profile.json").read_text())[0]["model"] == "resnet18"


@pytest.mark.parametrize("argv, needle", [
    (["--device", "cuda"], "no CUDA device"),
    (["--device", "tpu"], "unknown device"),
    (["--batch-size", "0"], "batch sizes must be positive"),
    (["--batch-size", "-4"], "batch sizes must be positive"),
    (["--batch-size", "eight"], "must be integers"),
    (["--dtype", "fp64"], "unknown dtype"),
    (["--arch", "nosuchnet"], "unknown model 'nosuchnet'"),
    (["--arch", "nosuchpkg.mod:fn"], "cannot import 'nosuchpkg.mod'"),
    (["--arch", "json:nosuchfn"], "json has no callable 'nosuchfn'"),
    (["--format", "xls"], "unknown format xls"),
    (["--metrics", "some"], "unknown metrics"),
    (["--iters", "0"], "--iters must be at least 1"),
])
def test_bad_input_is_one_line(capsys, tmp_path, argv, needle):
    code, _, err = run(capsys, "profile", "--arch", "alexnet", "--out", str(tmp_path / "o"), *argv)
    assert code == 2
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_unwritable_out_is_one_line(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = run(capsys, "profile", "--arch", "alexnet", "--metrics", "static", "--out", str(blocker / "sub"))
    assert code == 2 and "cannot write to output folder" in err and len(err.splitlines()) == 1


def test_cache_returns_what_a_fresh_count_returns(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVBENCH_CACHE_DIR", str(tmp_path / "cache"))
    first = convbench.profile("resnet18", batch_sizes=[3], metrics="static")
    assert list((tmp_path / "cache").glob("counts-*.json"))
    second = convbench.profile("resnet18", batch_sizes=[3], metrics="static")
    monkeypatch.setenv("CONVBENCH_CACHE", "0")
    fresh = convbench.profile("resnet18", batch_sizes=[3], metrics="static")
    cols = ["params", "macs", "acts", "saved_bytes", "saved_act_bytes", "unsupported_ops"]
    assert first[cols].equals(second[cols]) and first[cols].equals(fresh[cols])


def test_the_first_screen_fits_120_columns_with_short_notes_under_the_table(capsys, tmp_path):
    code, out, err = run(capsys, "profile", "--arch", "resnet18,inception_v3", "--metrics", "static", "--batch-size", "1",
                         "--out", str(tmp_path / "s"))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 120
    row = next(line for line in lines if line.startswith("inception_v3 "))
    assert row.rstrip().endswith("partial [1]")
    assert ("[1] inception_v3 b1 (partial): saved bytes: n/a at batch 1 (a batch norm over a 1x1 grid needs at least 2 "
            "images to train)") in " ".join(out.split())
    assert "Expected more than 1 value" not in out
    closing = " ".join(" ".join(lines[-2:]).split()) if lines[-1].startswith("  -> ") else lines[-1]  # a long path: own line
    assert closing.endswith(f"2 rows: 1 ok, 1 partial (notes above) -> {tmp_path / 's'}/profile.csv")


def test_a_counts_only_run_at_the_default_batch_is_not_partial_for_saved_bytes_it_did_not_ask_for(capsys, tmp_path):
    code, out, err = run(capsys, "profile", "--arch", "resnet18,inception_v3", "--metrics", "static",
                         "--out", str(tmp_path / "s"))
    assert code == 0 and err == ""
    frame = pd.read_csv(tmp_path / "s" / "profile.csv").set_index("model")
    assert list(frame["status"]) == ["ok", "ok"] and frame["error"].isna().all()
    assert pd.isna(frame.loc["inception_v3", "saved_bytes"]) and frame.loc["resnet18", "saved_bytes"] > 0
    assert frame.loc["inception_v3", "note"].startswith("saved bytes: n/a at batch 1 (a batch norm over a 1x1 grid")
    assert "--batch-size 2 counts them" in frame.loc["inception_v3", "note"]
    assert "2 rows: 2 ok ->" in " ".join(out.split())
    # asked for (a batch named, or the timed metrics): the row is partial, as before
    code, _, _ = run(capsys, "profile", "--arch", "inception_v3", "--metrics", "static", "--batch-size", "1",
                     "--out", str(tmp_path / "asked"))
    assert code == 0 and pd.read_csv(tmp_path / "asked" / "profile.csv")["status"].tolist() == ["partial"]


def test_layers_add_up_to_the_model_with_functional_matmuls_attributed(capsys, tmp_path, user_nets):
    code, out, err = run(capsys, "profile", "--arch", f"{user_nets}:plain", "--by-layer", "--iters", "1", "--warmup", "0",
                         "--input-size", "16", "--out", str(tmp_path / "l"))
    assert code == 0, err
    layers = pd.read_csv(tmp_path / "l" / "layers.csv").set_index("module")
    total = pd.read_csv(tmp_path / "l" / "profile.csv")["macs"][0]
    assert total == 16 * 16 * 8 * 27 + 2 * 64 + 80
    assert layers["self_macs"].sum() == total and layers.loc["(model)", "self_macs"] == 128  # the two matmuls
    assert "USDT" not in out + err


def test_every_zoo_model_s_layers_add_up(zoo_counts):
    from convbench.measure.counts import model_counts
    from convbench.zoo.specs import resolve_models
    for spec in resolve_models("all"):
        counts = model_counts(spec, by_layer=True)
        assert sum(layer["self_macs"] for layer in counts["layers"]) == counts["macs"] == zoo_counts[spec.name]["macs"], spec.name
        assert sum(layer["self_acts"] for layer in counts["layers"]) == counts["acts"], spec.name


def test_static_sweeps_never_fork_after_cuda_is_initialised(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cuda = ProfileConfig(arch="all", device="cuda", metrics="static", isolate=False)
    assert ProfilePlan(cuda)._counting_workers(37) == 1
    assert ProfilePlan(ProfileConfig(arch="all", metrics="static"))._counting_workers(37) == min(len(os.sched_getaffinity(0)), 8)
