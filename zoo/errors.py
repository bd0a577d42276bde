"""The error type for user mistakes: the CLIs print its message as one line and exit with code 1."""


class UserError(ValueError):
    """A file, folder or option that cannot be used as given; the message names it and the problem."""
