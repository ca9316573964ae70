"""What is measured on the device is what the row says: kernels only in device time, host ranges in layer times, an
unmeasured pass before every peak; driven on the CPU through synthetic profiler events and a fake allocator."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from convbench.measure import device_time, layer_times, memory
from convbench.measure.device import PeakMemory

CPU, CUDA = torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.CUDA


def _event(name, device_type, cpu_us=0.0, device_us=0.0, start=0.0, end=0.0, annotation=False, activity=None):
    return SimpleNamespace(name=name, device_type=device_type, cpu_time_total=cpu_us, device_time_total=device_us,
                           is_user_annotation=annotation, activity_type=activity,
                           time_range=SimpleNamespace(start=start, end=end))


def test_layer_times_take_cpu_time_from_the_host_range_and_ignore_the_gpu_annotation():
    events = []
    for _ in range(2):  # two forwards
        events += [_event("module::layer1", CPU, cpu_us=300, device_us=80, annotation=True),
                   _event("module::layer1.conv", CPU, cpu_us=100, device_us=50, annotation=True),
                   _event("aten::conv2d", CPU, cpu_us=90, device_us=50),
                   # later in the list, as the profiler emits them: the device-side copies, no CPU time
                   _event("module::layer1", CUDA, device_us=85, annotation=True, activity="gpu_user_annotation"),
                   _event("module::layer1.conv", CUDA, device_us=52, annotation=True, activity="gpu_user_annotation")]
    times = layer_times.attribute(events, iters=2, cuda=True)
    assert times == {"layer1": {"cpu_time_us": 300.0, "device_time_us": 80.0},
                     "layer1.conv": {"cpu_time_us": 100.0, "device_time_us": 50.0}}
    cpu_only = layer_times.attribute(events[:3], iters=2, cuda=False)
    assert cpu_only["layer1"]["cpu_time_us"] == 150.0 and cpu_only["layer1"]["device_time_us"] != cpu_only["layer1"]["device_time_us"]


def test_device_time_counts_kernels_only_and_overlapping_kernels_once():
    events = [_event("volta_sgemm", CUDA, start=0, end=100, activity="kernel"),
              _event("other_stream_kernel", CUDA, start=50, end=150, activity="kernel"),
              _event("Memcpy HtoD (Pageable -> Device)", CUDA, start=200, end=400, activity="gpu_memcpy"),
              _event("Memset (Device)", CUDA, start=400, end=450),
              _event("module::layer1", CUDA, start=0, end=1000, annotation=True, activity="gpu_user_annotation"),
              _event("aten::conv2d", CPU, start=0, end=2000),
              _event("later_kernel", CUDA, start=500, end=600, activity="kernel")]
    assert device_time.busy_us([(0, 100), (50, 150), (500, 600)]) == 250
    assert device_time.kernel_busy_ms(events, iters=2) == pytest.approx(0.125)


def test_no_kernel_recorded_gives_no_figure_and_a_note():
    quiet = [_event("module::x", CUDA, start=0, end=10, annotation=True, activity="gpu_user_annotation")]
    cols = device_time.device_columns(lambda: None, torch.device("cpu"), 2.0, events=lambda *a: quiet)
    assert cols == {"note": device_time.NO_KERNELS_NOTE}


@pytest.mark.parametrize("mode", ["eager", "graphs", "compile+graphs"])
def test_gpu_busy_is_measured_the_same_way_in_every_mode(mode, monkeypatch):
    """A graphs row's busy share comes from its kernels, like any other row's, so idle gaps inside a replay show."""
    calls = []

    def events(forward, device, iters):
        calls.append(mode)
        return [_event("k", CUDA, start=0, end=400 * iters, activity="kernel")]
    cols = device_time.device_columns(lambda: None, torch.device("cuda"), latency_ms_p50=1.0, iters=5, events=events)
    assert calls == [mode] and cols == {"device_ms": 0.4, "gpu_busy": 0.4, "launch_bound": True}


class _FakeAllocator:
    def __init__(self, monkeypatch):
        self.log: list[str] = []
        self.allocated = 0
        for name, fn in {"synchronize": lambda *a: None, "empty_cache": lambda: None,
                         "reset_peak_memory_stats": lambda *a: self.log.append("reset"),
                         "memory_allocated": lambda *a: self.allocated,
                         "max_memory_allocated": lambda *a: self.allocated + 1000}.items():
            monkeypatch.setattr(torch.cuda, name, fn)


def test_each_peak_follows_an_unmeasured_pass_so_autotuning_workspaces_stay_out(monkeypatch):
    fake = _FakeAllocator(monkeypatch)

    class Logged(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            fake.log.append("train" if self.training else "infer")
            return self.conv(x).mean((2, 3))
    peaks = memory.peaks(Logged(), torch.zeros(2, 3, 8, 8), None, reader=PeakMemory("cuda"))
    assert fake.log == ["infer", "reset", "infer", "train", "reset", "train"]
    assert peaks == {"peak_mem_infer_bytes": 1000, "peak_mem_train_bytes": 1000}
    fake.log.clear()
    assert memory.peaks(Logged(), torch.zeros(2, 3, 8, 8), None, train=False, reader=PeakMemory("cuda")) == {"peak_mem_infer_bytes": 1000}
    assert fake.log == ["infer", "reset", "infer"]
