"""The training stage's one exception type: a bad input described in one line."""


class DataError(ValueError):
    """Input data that cannot be used, with a message naming the file, column or value."""


class NotFittedError(DataError):
    """A detector used before ``fit`` (scikit-learn's name for the same mistake)."""


class TrainingDiverged(DataError):
    """Training whose loss became NaN or infinite: the weights learned nothing usable."""
