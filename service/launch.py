"""The installed ``histosynth`` command's entry point: the allocator first, then the CLI.

With ``HISTOSYNTH_ALLOCATOR=auto`` (the default) and tcmalloc installed, the command replaces
itself (``execve``, same process id, same arguments) with a copy that has tcmalloc in
``LD_PRELOAD``; the copy sees it there and goes on. This happens before torch is imported, so
it costs one interpreter start.
"""

from __future__ import annotations

import os
import sys

from pydantic import ValidationError

from model.allocator import find_tcmalloc, preload_environment
from worker.settings import LaunchSettings


def main() -> int:
    """Restart with tcmalloc when asked and possible, else run the CLI."""
    try:
        env = preload_environment(LaunchSettings().allocator, os.environ, find_tcmalloc())
    except (ValidationError, ValueError) as exc:
        print(f"histosynth: error: {_message(exc)}", file=sys.stderr)
        return 2
    if env is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    from service.cli import main as cli_main

    return cli_main()


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"HISTOSYNTH_ALLOCATOR: {err['msg']} (got {err.get('input')!r})"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
