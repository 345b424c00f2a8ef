"""The one exception type for bad input from a person: a config value, a path, a file.

Entry points print its message as one line and exit with status 2; anything
else is a bug and keeps its traceback.
"""


class UsageError(ValueError):
    """Bad input; the message names the value and the fix."""
