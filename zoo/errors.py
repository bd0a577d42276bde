"""The error type for user mistakes, and the CLI decorator that turns it into one line and exit code 1."""

import functools
import sys


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
