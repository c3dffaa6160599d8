"""The exceptions a user can cause and fix; the CLI prints them as one line and exits 1.

Set ``SAT_DEBUG=1`` to get the full traceback instead.
"""

from show_attend_tell.checkpoints import CheckpointError
from show_attend_tell.config_loading import ConfigError

# ValueError: the modules raise it for config values they cannot use, naming the key.
USER_ERRORS = (ConfigError, CheckpointError, FileNotFoundError, NotADirectoryError,
               PermissionError, ValueError, RuntimeError, OSError)
