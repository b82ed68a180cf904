"""The ``anchorgate`` command line: a thin shell over the library.

Each subcommand parses its options, makes one library call and prints. Errors a
user can cause become one line on stderr and an exit code, in one place
(:func:`main`): 0 success, 1 a check failed, 2 a usage or input error.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UserError(click.ClickException):
    """A mistake the user can fix; printed as one line, exit code 2."""

    exit_code = EXIT_USAGE


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="anchorgate")
def cli() -> None:
    """anchorgate: anchor sensor telemetry to a signed Merkle hash chain.

    \b
    Example:
      anchorgate keygen --out keys/gateway
    """


def _register_commands() -> None:
    # Commands from other modules; the simulators are imported lazily by click only
    # when their command runs would be nicer, but their import is light.
    from simulators.cli import simulate  # noqa: PLC0415

    cli.add_command(simulate)


_register_commands()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script's entry point)."""
    try:
        cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EXIT_FAILED
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
