"""The runtime's user-facing error: the model layer's :class:`models.errors.UserError`."""

from models.errors import UserError

__all__ = ["UserError"]
