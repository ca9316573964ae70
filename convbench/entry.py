"""The `convbench` command's first frame: the signals are convbench's before torch and the commands are imported
(seconds on a cold disk), so that Ctrl-C or SIGTERM at any moment ends in one line and 130/143/129."""
from __future__ import annotations

import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    from convbench import interrupts
    interrupts.install(permanent=True)
    try:
        from convbench.cli.main import main as run
    except KeyboardInterrupt as exc:
        sys.stderr.write("interrupted while starting: nothing was run\n")
        sys.exit(128 + getattr(exc, "signal_number", 2))
    run(argv)


if __name__ == "__main__":
    main()
