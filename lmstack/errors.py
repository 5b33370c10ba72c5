"""The one error type a user can cause: a single line that names the file, field or value at fault."""


class LmstackError(Exception):
    """A user-facing error. The CLI prints ``str(err)`` on one line and exits with ``exit_code``."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
