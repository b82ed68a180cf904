"""Exit codes and the one-line user error shared by every ``anchorgate`` command module."""

from __future__ import annotations

import click

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UserError(click.ClickException):
    """A mistake the user can fix; printed as one line, exit code 2."""

    exit_code = EXIT_USAGE
