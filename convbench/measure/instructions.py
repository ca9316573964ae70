"""Instructions a call executes, counted by valgrind's callgrind: the same figure however busy the machine is, so
a change of a few percent shows on a shared 2-core runner where no clock can see it.

How. The measuring process runs under `valgrind --tool=callgrind --instr-atstart=no --collect-atstart=no`: while
Python starts and torch imports, nothing is instrumented (the simulator runs several times faster) and nothing is
counted. The process then asks callgrind itself, through valgrind's client requests (the instruction sequence
valgrind.h's macros compile to on x86-64, a no-op outside valgrind), to start instrumenting; it warms the call up,
switches counting on, and makes two counted regions, N calls and then 2N calls, each ended by a dump of the
figures (which zeroes them). The difference of the two regions is N calls' instructions exactly, without the fixed
cost of a region. One thread, a fixed hash seed and the same environment on every run make it repeatable.

What it is not: valgrind presents a CPU without AVX-512 or AMX, so oneDNN runs its AVX2 kernels under it (the
figure describes the code path, not the production kernels' speed); instructions are not time (memory stalls do
not show); CUDA kernels are out of reach (the host-side instructions of a CUDA forward still are).

Standalone on purpose (the standard library only): `convbench gate --measure instructions` copies this file
beside its worker into each side's tree, so that both sides are counted the same way."""
from __future__ import annotations

import ctypes
import glob
import os
import re
import shutil
import subprocess
import tempfile
from typing import Any, Callable

# valgrind.h: VG_USERREQ_TOOL_BASE('C', 'T') and callgrind's requests after it.
_CALLGRIND = ord("C") << 24 | ord("T") << 16
DUMP_STATS, ZERO_STATS, TOGGLE_COLLECT, START_INSTRUMENTATION = (_CALLGRIND, _CALLGRIND + 1, _CALLGRIND + 2,
                                                                 _CALLGRIND + 4)
# uint64 request(uint64 args[6]): mov rax, rdi; xor edx, edx; the special preamble (rol rdi by 3, 13, 61, 51: 128
# bits in all, so rdi is unchanged); xchg rbx, rbx (the client request: rdx = request(rax)); mov rax, rdx; ret.
_REQUEST_CODE = bytes.fromhex("4889f8" "31d2" "48c1c703" "48c1c70d" "48c1c73d" "48c1c733" "4887db" "4889d0" "c3")
CALLS = 1                 # N: the regions run N and 2N calls (each call's count is exact: one is enough)
TIMEOUT_S = 900.0         # one counted process at most; import torch alone takes about a minute under callgrind
INSTALL = "install valgrind (Debian and Ubuntu: apt-get install valgrind; Fedora: dnf install valgrind)"
# The environment every counted process gets, whatever the caller's: one thread, one hash seed.
FIXED_ENV = {"PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
             "CONVBENCH_INSTRUCTIONS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


class CountFailed(RuntimeError):
    """valgrind is missing, or the counted process failed, hung or left no figures: the message says which."""


class _Requests:
    """valgrind client requests from Python: the machine code valgrind.h's macros compile to, in a page of its own."""

    def __init__(self) -> None:
        import mmap
        import platform
        if platform.machine() not in ("x86_64", "AMD64"):
            raise CountFailed(f"counting instructions is built for x86-64; this machine is {platform.machine()}")
        self._page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self._page.write(_REQUEST_CODE)
        address = ctypes.addressof(ctypes.c_char.from_buffer(self._page))
        self._call = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64 * 6))(address)

    def __call__(self, request: int) -> int:
        args = (ctypes.c_uint64 * 6)(request, 0, 0, 0, 0, 0)
        return self._call(ctypes.byref(args))


def counted_regions(fn: Callable[[], Any], calls: int = CALLS, warmup: int = 1) -> None:
    """In the process valgrind runs: instrument from here on, warm `fn` up, then count `calls` and `2 * calls` calls
    of it, each region ended by a dump of callgrind's figures."""
    request = _Requests()
    for _ in range(max(1, warmup)):  # first calls build kernels and caches: uninstrumented, several times faster
        fn()
    request(START_INSTRUMENTATION)
    fn()  # once more, instrumented and not counted: the code the regions run is translated before they start
    request(TOGGLE_COLLECT)
    request(ZERO_STATS)
    for n in (calls, 2 * calls):
        for _ in range(n):
            fn()
        request(DUMP_STATS)
    request(TOGGLE_COLLECT)


def leave(printed: str = "") -> None:
    """End the counted process at once, `printed` its last line on stdout: Python's own shutdown under the simulator
    takes seconds and counts nothing (callgrind still writes its figures on exit)."""
    import sys
    if printed:
        sys.stdout.write(printed + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def valgrind() -> str:
    found = shutil.which("valgrind")
    if not found:
        raise CountFailed(f"counting instructions needs valgrind, which is not on PATH: {INSTALL}")
    return found


def command(out_prefix: str) -> list[str]:
    return [valgrind(), "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no", "--dump-instr=no",
            "--cache-sim=no", "--branch-sim=no",
            f"--callgrind-out-file={out_prefix}.%p", "--error-exitcode=0", "-q"]


def child_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(FIXED_ENV)
    return env


_TOTALS = re.compile(r"^(?:totals|summary):\s*(\d+)", re.M)


def _dump_total(path: str) -> int:
    with open(path, errors="replace") as f:
        found = _TOTALS.findall(f.read())
    if not found:
        raise CountFailed(f"callgrind's dump {os.path.basename(path)} holds no totals")
    return int(found[-1])


_REGION = re.compile(r"\.(\d+)\.(\d+)$")  # out.<pid>.<n>: the n-th dump a client request asked for


def per_call(dumps: list[str], calls: int) -> int:
    """Instructions of one call from the two regions' dumps (N calls, then 2N): (2N region - N region) / N."""
    regions = sorted((int(m.group(2)), path) for path in dumps if (m := _REGION.search(path)))
    totals = [_dump_total(path) for _, path in regions[-2:]]
    if len(regions) != 2:
        raise CountFailed(f"expected two counted regions, callgrind dumped {len(regions)}")
    extra = totals[1] - totals[0]
    if extra <= 0:
        raise CountFailed(f"the 2N-call region counted no more than the N-call region ({totals[1]} vs {totals[0]})")
    return round(extra / calls)


class Counting:
    """One counted process, started now and read later, so that several (the gate's two sides) run at once."""

    def __init__(self, argv: list[str], cwd: str | None = None, env: dict[str, str] | None = None, calls: int = CALLS,
                 timeout: float = TIMEOUT_S) -> None:
        self.calls, self.timeout = calls, timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="convbench-callgrind-")
        self._prefix = os.path.join(self._tmp.name, "out")
        self._stdout = open(os.path.join(self._tmp.name, "stdout"), "w+")
        self._stderr = open(os.path.join(self._tmp.name, "stderr"), "w+")
        try:
            self._proc = subprocess.Popen([*command(self._prefix), *argv], cwd=cwd, env=child_env(env),
                                          stdout=self._stdout, stderr=self._stderr, stdin=subprocess.DEVNULL)
        except BaseException:
            self.close()
            raise

    def result(self) -> tuple[int, str]:
        """(instructions per call, what the counted process printed last on stdout)."""
        try:
            try:
                code = self._proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
                raise CountFailed(f"the counted process ran past {self.timeout:.0f} s under valgrind (killed)") from None
            self._stderr.seek(0)
            self._stdout.seek(0)
            printed = [ln for ln in self._stdout.read().splitlines() if ln.strip()]
            if code != 0:
                raise CountFailed(_why(code, self._stderr.read()))
            return per_call(glob.glob(self._prefix + ".*"), self.calls), printed[-1] if printed else ""
        finally:
            self.close()

    def close(self) -> None:
        if getattr(self, "_proc", None) is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        for f in (self._stdout, self._stderr):
            if not f.closed:
                f.close()
        self._tmp.cleanup()


def count(argv: list[str], cwd: str | None = None, env: dict[str, str] | None = None, calls: int = CALLS,
          timeout: float = TIMEOUT_S) -> int:
    """Run `argv` (a Python command whose process calls counted_regions with `calls`) under callgrind; its
    instructions per call."""
    return Counting(argv, cwd, env, calls, timeout).result()[0]


def _why(code: int, stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("==")]
    if code == -4 or "SIGILL" in stderr or "unhandled instruction" in stderr:
        return ("an instruction valgrind does not know ended the process (a library built for a newer CPU than "
                "valgrind emulates)")
    if code < 0:
        return f"the counted process died of signal {-code} under valgrind"
    return f"the counted process failed under valgrind (exit {code}): {lines[-1][:300] if lines else 'no message'}"
