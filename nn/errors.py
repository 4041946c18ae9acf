"""The one exception type that reaches the user as a single line (no traceback)."""


class UserError(Exception):
    """A problem the user can fix: bad override, missing file, foreign checkpoint."""
