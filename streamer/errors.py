"""The one exception type that reaches the user as a message instead of a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or environment the user can fix: printed as one line, exit code 2."""

    exit_code = 2
