"""Errors that the command line turns into one clean line and an exit code."""


class VideogenError(Exception):
    """Base error: printed as one line, never with a traceback."""

    exit_code = 1


class UserError(VideogenError):
    """Bad input: flags, preset, prompt file, model folder, output path (exit 2)."""

    exit_code = 2


class RenderError(VideogenError):
    """A render that was valid input but failed at run time (exit 1)."""

    exit_code = 1
