"""The runtime's user-facing errors: the model layer's :class:`models.errors.UserError`, and
:class:`InputLost` for an audio input that goes away during a session."""

from models.errors import UserError

__all__ = ["InputLost", "UserError"]


class InputLost(UserError):
    """The audio input stopped delivering mid-session (device unplugged, audio server gone).

    One line like any UserError, but exit code 1: the input was fine when the session started.
    The utterance in progress is dropped (it would end at an arbitrary cut, and Whisper invents
    words for such fragments); what was emitted stays, and the summary is still written.
    """

    exit_code = 1
