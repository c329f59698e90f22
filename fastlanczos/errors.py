"""Errors raised on bad input. All subclass ValueError so callers can catch one type."""


class LanczosInputError(ValueError):
    """An argument has the wrong shape, dtype, device or value."""


class NonFiniteError(ValueError):
    """z or the operator's output holds NaN or inf."""


class NotPositiveDefiniteError(ValueError):
    """A Ritz value is <= 0 where f needs a positive definite operator."""
