"""How a command reports a user error: one line on stderr and exit status 2."""

from __future__ import annotations

EXIT_USAGE = 2
"""Exit status of a command refused for bad input."""


class CLIError(Exception):
    """A user error reported as one line on stderr with exit status 2."""
