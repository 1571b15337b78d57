"""The `videogen` command's entry point. Importing the command takes a few tenths of a second: Ctrl-C then is
`interrupted` and exit code 130, as at any later moment, not a Python traceback."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from videogen.cli.main import main as run
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    run()
