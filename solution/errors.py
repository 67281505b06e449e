"""The project's error for bad inputs: a leaf module every reader and stage imports."""


class DataError(ValueError):
    """An input file is missing or malformed; the message names the file and the problem."""
