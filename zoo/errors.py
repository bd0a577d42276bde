"""The error type for user mistakes, and the CLI decorator that turns it into one line and exit code 1."""

import errno
import functools
import logging
import sys
import warnings

import click

__all__ = ["UserError", "user_errors", "log_to_stderr", "OneLineErrors"]


class UserError(ValueError):
    """A file, folder or option that cannot be used as given; the message names it and the problem."""


def user_errors(fn):
    """User mistakes end in one `error:` line on stderr and exit code 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    return wrapper


class _Echo(logging.Handler):
    """One line on stderr per message (sys.stderr looked up at each message: click's test runner swaps it)."""

    def emit(self, record):
        click.echo(self.format(record), err=True)


def log_to_stderr(quiet: bool) -> None:
    """For the CLIs: the packages' progress messages (logging, INFO) on stderr, none with --quiet. Library users
    see them only if they configure logging themselves."""
    for name in ("zoo", "runtime", "trainer", "export"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _Echo) for h in logger.handlers):
            logger.addHandler(_Echo())
        logger.setLevel(logging.WARNING if quiet else logging.INFO)
        logger.propagate = False


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {message}", err=True)


class OneLineErrors(click.Group):
    """A command group whose option and argument mistakes also end in one `error:` line and exit code 1
    (click's own standalone mode prints the usage text and exits 2), and whose warnings are one
    `warning:` line each."""

    def invoke(self, ctx):
        warnings.showwarning = _one_line_warning
        return super().invoke(ctx)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
            click.echo(f"error: {e.format_message()}{hint}", err=True)
            sys.exit(1)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except Exception as e:
            if _interrupted(e):   # Ctrl-C before the command's own handling (click's Abort, an interrupted import)
                click.echo("interrupted", err=True)
                sys.exit(130)
            if isinstance(e, click.Abort):
                click.echo("Aborted!", err=True)
                sys.exit(1)
            if isinstance(e, OSError) and e.errno == errno.EPIPE:   # piped into a command that stopped reading
                sys.exit(1)
            raise
        sys.exit(rv if isinstance(rv, int) else 0)


def _interrupted(e: BaseException | None) -> bool:
    """Whether a KeyboardInterrupt caused `e`: onnxruntime, for one, turns a Ctrl-C during its import into
    ImportError('initialization failed')."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False
