"""Errors that reach the user as a message, not a traceback."""


class FishdipError(Exception):
    """Base class: the CLI prints these as one clear line and exits non-zero."""


class DataError(FishdipError):
    """A data file is missing or malformed; the message names the file and where."""
