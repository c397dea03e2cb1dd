"""The one exception type that reaches the user as a message instead of a traceback.

It lives in the model layer so that ``models/`` stands alone; the streaming runtime
(``streamer/``) raises and catches the same class.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input or environment the user can fix: printed as one line, exit code 2."""

    exit_code = 2
