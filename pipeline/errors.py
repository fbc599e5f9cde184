"""The one exception type that means "the user asked for something wrong"; the CLI prints it as one line."""


class UserError(ValueError):
    """A mistake in a path, recipe, option or input that the user can fix; never a bug of ours."""
