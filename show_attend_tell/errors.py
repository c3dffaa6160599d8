"""The errors a user causes and can fix. The CLI prints a :class:`UserError` as one line
naming the file or key and exits 1; anything else is a bug and keeps its traceback.

Set ``SAT_DEBUG=1`` to get the traceback of a user error too. Each class also derives from the
built-in exception a caller would expect (``ValueError`` for a bad value, ...), so code and
tests that catch those still do.
"""


class UserError(Exception):
    """A problem in what the user gave: a config value, a file, a flag, a run directory."""


class InvalidInput(UserError, ValueError):
    """A config value, flag or file content that cannot be used; the message names it and
    says what was expected."""


class MissingInput(UserError, FileNotFoundError):
    """A file or folder the command reads is not there."""


class OutputExists(UserError, FileExistsError):
    """The command would replace an output it must not overwrite."""


class OutputNotWritable(UserError, OSError):
    """The command cannot write where it was told to."""
