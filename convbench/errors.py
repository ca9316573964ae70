class UserError(Exception):
    """A mistake in what the user asked for: the CLI prints it as one line and exits non-zero."""
