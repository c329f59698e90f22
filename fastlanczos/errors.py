"""Errors raised on bad input. All subclass ValueError so callers can catch one type."""


class LanczosInputError(ValueError):
    """An argument has the wrong shape, dtype, device or value."""


class NonFiniteError(ValueError):
    """z or the operator's output holds NaN or inf."""


class NotPositiveDefiniteError(ValueError):
    """A Ritz value is <= 0 where f needs a positive definite operator."""


class NotSymmetricError(ValueError):
    """The operator's products are not those of a symmetric matrix: u^T A v != v^T A u."""


class TridiagonalConvergenceError(ValueError):
    """A tridiagonal eigen-problem could not be solved, by the compiled QL nor by LAPACK."""
