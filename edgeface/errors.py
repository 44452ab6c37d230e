"""Errors the CLI turns into one clear line on stderr and an exit code (never a traceback)."""


class EdgefaceError(Exception):
    """Bad usage or bad input (missing file, corrupt image, malformed pairs.txt): exit code 2."""

    exit_code = 2


class CheckFailed(EdgefaceError):
    """A check the user asked for did not pass (size budget, regression, accuracy): exit code 1."""

    exit_code = 1


def first_line(e: BaseException) -> str:
    """An exception's first message line, or its type when it has no message."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def sigterm_as_interrupt():
    """SIGTERM (kill, job schedulers) stops like Ctrl-C, so `finally` blocks run: align terminates
    its pool with the manifest valid, train marks its run failed.

    Returns the previous handler (None when signals cannot be set here)."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None  # not the main thread: leave signals alone


def run_main(main, argv=None) -> int:
    """Exit code of a `python -m edgeface.X` entry point: EdgefaceError becomes one line on stderr
    (exit 1 or 2), Ctrl-C exits 130; like the `edgeface` CLI, without a traceback."""
    import sys

    try:
        return int(main(argv) or 0)
    except EdgefaceError as e:
        print(f"edgeface: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("edgeface: interrupted", file=sys.stderr)
        return 130
