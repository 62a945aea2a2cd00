"""Errors the CLI turns into one line and exit status 2 (a usage error: nothing was loaded, nothing written)."""


class UsageError(ValueError):
    """A bad option, file or name given by the user; the message names it."""
