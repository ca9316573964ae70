"""Per-model isolation: run one unit of a sweep (a model's rows, a compare case, a training run) in a child
process and stream its rows back, so that what one model does to the process (a fragmented CUDA allocator, an
illegal memory access, a segfault in a kernel, the kernel's OOM killer) ends that model's rows, not the sweep.

The child is `python -m convbench.run.isolate TARGET`, with TARGET a `module:function` called as
TARGET(payload, send), the payload the JSON given on stdin. It sends messages: {"row": {...}, "samples": [...]} for a
finished row (the parent writes it), {"event": {...}} for anything the parent streams as it comes (a training step), and
{"stage": "timing", "key": ...} before each measurement, so that a death can be reported as where it happened.
Messages travel on a private copy of stdout; whatever the code under test prints goes to stderr.

The timeout is on silence: a child that sends nothing (no row, event or stage) for `timeout` seconds is killed."""
from __future__ import annotations

import importlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from convbench import children
from convbench.errors import UserError, error_text
from convbench.run.rows import Row

DEFAULT_TIMEOUT_S = 900.0


@dataclass
class ChildEnd:
    """How the child ended: cleanly, or how it died and during what."""
    ok: bool = True
    how: str = ""          # e.g. "child killed by SIGKILL", "child exited with code 1", "child timed out after 900 s"
    stage: str = ""        # the last stage the child announced
    key: Any = None        # that stage's key (e.g. the batch size)
    detail: str = ""       # the last line the child wrote to stderr

    def describe(self) -> str:
        where = f" during {self.stage}" if self.stage else ""
        key = f" (batch {self.key})" if isinstance(self.key, int) else (f" ({self.key})" if self.key else "")
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.how}{where}{key}{detail}"


class LineReader:
    """Lines from a pipe, each within a deadline. Python's buffered readline can pull several lines into its
    buffer at once, after which select() on the pipe reports nothing new while lines wait unread; this reads
    the raw pipe into its own buffer instead."""

    def __init__(self, pipe) -> None:
        self._fd = pipe.fileno()
        self._buffer = b""
        self._eof = False
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)

    def readline(self, timeout: float) -> str | None:
        """The next line; "" at end of file; None when `timeout` seconds pass without one."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer and not self._eof:
            if not self._selector.select(max(0.0, deadline - time.monotonic())):
                return None
            chunk = os.read(self._fd, 1 << 16)
            self._eof = not chunk
            self._buffer += chunk
        line, sep, self._buffer = self._buffer.partition(b"\n")
        return (line + sep).decode()

    def close(self) -> None:
        self._selector.close()


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class Child:
    """TARGET(payload) in a child process: iterate `rows()` to receive rows as they finish; `end` then says how
    the child ended."""

    def __init__(self, target: str, payload: dict[str, Any], timeout: float = DEFAULT_TIMEOUT_S,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.target, self.payload, self.timeout, self.on_event = target, payload, timeout, on_event
        self.end = ChildEnd()

    def rows(self) -> Iterator[Row]:
        with tempfile.TemporaryFile("w+") as stderr:
            proc = children.popen([sys.executable, "-m", "convbench.run.isolate", self.target], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=stderr, text=True, env=children.env())
            timed_out = False
            reader = LineReader(proc.stdout)
            try:
                proc.stdin.write(json.dumps(self.payload, default=str))
                proc.stdin.close()
                while True:
                    line = reader.readline(self.timeout)
                    if line is None:
                        timed_out = True
                        break
                    if not line:
                        break
                    message = json.loads(line)
                    if "row" in message:
                        yield Row.from_message(message)
                    elif "event" in message and self.on_event:
                        self.on_event(message["event"])
                    elif "stage" in message:
                        self.end.stage, self.end.key = message["stage"], message.get("key")
            finally:
                if proc.poll() is None and (timed_out or sys.exc_info()[0] is not None):
                    proc.kill()
                code = proc.wait()
                reader.close()
                proc.stdout.close()
            stderr.seek(0)
            lines = [ln.strip() for ln in stderr.read().splitlines() if ln.strip()]
        if timed_out:
            self.end.ok, self.end.how = False, f"child timed out after {self.timeout:.0f} s and was killed"
        elif code < 0:
            self.end.ok, self.end.how = False, f"child killed by {_signal_name(code)}"
        elif code != 0:
            self.end.ok, self.end.how = False, f"child exited with code {code}"
            self.end.detail = lines[-1][:300] if lines else ""


def run_child(target: str, payload: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> int:
    """The child's side: call the target, which sends its rows and stages itself."""
    module_name, _, name = target.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        print(f"cannot load {target}: {error_text(exc)}", file=sys.stderr)
        return 2
    function(payload, send)
    return 0


def main() -> None:
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message: dict[str, Any]) -> None:
        channel.write(json.dumps(message, default=str) + "\n")
        channel.flush()

    payload = json.loads(sys.stdin.read())
    try:
        code = run_child(sys.argv[1], payload, send)
    except UserError as exc:  # e.g. a user model this process cannot import
        print(exc, file=sys.stderr)
        code = 2
    except Exception as exc:
        # A failure the target did not turn into a row: one line for the parent to report.
        print(error_text(exc), file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
