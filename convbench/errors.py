class UserError(Exception):
    """A mistake in what the user asked for: the CLI prints it as one line and exits non-zero."""


class UserInterrupt(UserError):
    """Ctrl-C after the finished work was saved: reported in one line, exit code 130."""
