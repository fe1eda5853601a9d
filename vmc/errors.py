"""User-facing errors.

An `InputError` is a problem with what the user gave us (a config key, a file, a system).
The CLI prints its message as one line and exits with status 2, without a traceback.
"""


class InputError(Exception):
    """Bad input: the message names the config key, file or system at fault."""
