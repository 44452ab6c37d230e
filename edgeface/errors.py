"""Errors the CLI turns into one clear line on stderr and an exit code (never a traceback)."""


class EdgefaceError(Exception):
    """Bad usage or bad input (missing file, corrupt image, malformed pairs.txt): exit code 2."""

    exit_code = 2


class CheckFailed(EdgefaceError):
    """A check the user asked for did not pass (size budget, regression, accuracy): exit code 1."""

    exit_code = 1
