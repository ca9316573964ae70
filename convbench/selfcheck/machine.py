"""What makes timings unstable on this machine, each finding with its fix. Every query may be unavailable (a
VM without cpufreq, a GPU without NVML): then it is reported as unknown, never as a failure."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from convbench.measure import host_load
from convbench.measure.host import cpu_name


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_findings() -> tuple[dict[str, Any], list[str]]:
    """Facts and warnings (with the fix) for CPU timing."""
    cores = os.cpu_count() or 1
    facts: dict[str, Any] = {"cpu": cpu_name(), "cores": cores, "torch_threads": torch.get_num_threads()}
    warnings = []
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    facts["governor"] = governor or "unknown (no cpufreq here, as in most VMs)"
    if governor and governor != "performance":
        warnings.append(f"frequency governor is {governor!r}: clocks move with load; "
                        "fix: sudo cpupower frequency-set -g performance")
    no_turbo, boost = _read("/sys/devices/system/cpu/intel_pstate/no_turbo"), _read("/sys/devices/system/cpu/cpufreq/boost")
    turbo = "on" if no_turbo == "0" or boost == "1" else "off" if no_turbo == "1" or boost == "0" else "unknown"
    facts["turbo"] = turbo
    if turbo == "on":
        warnings.append("turbo is on: clocks follow temperature; fix: echo 1 | sudo tee "
                        "/sys/devices/system/cpu/intel_pstate/no_turbo (or cpufreq/boost = 0)")
    load = host_load.load_average()
    if load is not None:
        facts["load_1min"] = round(load[0], 2)
        if load[0] > 0.5 * cores:
            warnings.append(f"load average {load[0]:.2f} on {cores} cores: other work competes for the CPU; "
                            "fix: measure on a quiet machine")
    start = host_load.snapshot()
    time.sleep(0.5)
    share = host_load.others_share(start, host_load.snapshot())
    if share is not None:
        facts["others_cpu_share"] = round(share, 3)
        if share > host_load.BUSY_SHARE:
            warnings.append(f"other processes used {share:.0%} of the CPU over half a second; fix: stop them")
    if torch.get_num_threads() > cores:
        warnings.append(f"torch uses {torch.get_num_threads()} threads on {cores} cores; fix: torch.set_num_threads({cores})")
    return facts, warnings


_SMI_FIELDS = ("name", "driver_version", "persistence_mode", "clocks.sm", "clocks.max.sm",
               "clocks_throttle_reasons.active", "mig.mode.current", "ecc.mode.current")


def _nvidia_smi(index: int) -> dict[str, str] | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        proc = subprocess.run(["nvidia-smi", f"--id={index}", f"--query-gpu={','.join(_SMI_FIELDS)}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=20)
        apps = subprocess.run(["nvidia-smi", f"--id={index}", "--query-compute-apps=pid", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    values = dict(zip(_SMI_FIELDS, (v.strip() for v in proc.stdout.strip().splitlines()[0].split(","))))
    values["compute_pids"] = " ".join(apps.stdout.split()) if apps.returncode == 0 else ""
    return values


def _nvml(index: int) -> dict[str, str] | None:
    try:
        import pynvml  # the nvidia-ml-py package: convbench[nvml]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        values = {
            "name": str(pynvml.nvmlDeviceGetName(h)),
            "driver_version": str(pynvml.nvmlSystemGetDriverVersion()),
            "persistence_mode": "Enabled" if pynvml.nvmlDeviceGetPersistenceMode(h) else "Disabled",
            "clocks.sm": str(pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)),
            "clocks.max.sm": str(pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM)),
            "clocks_throttle_reasons.active": hex(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(h)),
            "compute_pids": " ".join(str(p.pid) for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)),
        }
        try:
            values["mig.mode.current"] = "Enabled" if pynvml.nvmlDeviceGetMigMode(h)[0] else "Disabled"
        except pynvml.NVMLError:
            values["mig.mode.current"] = "[N/A]"
        try:
            values["ecc.mode.current"] = "Enabled" if pynvml.nvmlDeviceGetEccMode(h)[0] else "Disabled"
        except pynvml.NVMLError:
            values["ecc.mode.current"] = "[N/A]"
        return values
    except Exception:  # NVML present but unusable (driver mismatch, container): fall back
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


# Throttle reasons that only say the GPU is idle or its application clocks are set (NVML's 0x1 and 0x2).
_BENIGN_THROTTLE = 0x1 | 0x2


def gpu_findings(device: torch.device) -> tuple[dict[str, Any], list[str]]:
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    facts: dict[str, Any] = {"gpu": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                             "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda,
                             "cudnn": torch.backends.cudnn.version()}
    warnings = []
    values, source = _nvml(index), "NVML"
    if values is None:
        values, source = _nvidia_smi(index), "nvidia-smi"
    if values is None:
        facts["queries"] = "unavailable (no NVML binding, no nvidia-smi): clocks and throttling unknown"
        return facts, warnings
    facts["queries"] = source
    facts.update({k: v for k, v in values.items() if k != "name"})
    if values.get("persistence_mode", "").lower().startswith("disabled"):
        warnings.append("persistence mode is off: the driver reinitialises between processes and clocks ramp up late; "
                        "fix: sudo nvidia-smi -pm 1")
    try:
        reasons = int(values.get("clocks_throttle_reasons.active", "0"), 16)
    except ValueError:
        reasons = 0
    if reasons & ~_BENIGN_THROTTLE:
        warnings.append(f"clocks are throttled now (reasons {reasons:#x}: power, thermal or slowdown); "
                        "fix: let it cool, check power limits (nvidia-smi -q -d PERFORMANCE)")
    pids = [p for p in values.get("compute_pids", "").split() if p != str(os.getpid())]
    if pids:
        warnings.append(f"other processes use this GPU (pids {', '.join(pids)}): their kernels share its time; fix: stop them")
    if values.get("mig.mode.current", "").lower().startswith("enabled"):
        warnings.append("MIG is on: figures are for a slice of the GPU, not the whole device")
    return facts, warnings
