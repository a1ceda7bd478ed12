"""Errors a user can cause: the CLI prints them as one line, the API maps each kind to one status.

One hierarchy for every layer: code raises the kind of problem (``NotFound``, ``Conflict``, ...)
and never an HTTP exception; ``registry/api/errors.py`` is the one place that turns a kind into a
status code, and ``sitepulse`` prints any of them as one line with exit code 2.
"""


class SitePulseError(Exception):
    """A problem the user can fix (configuration, input, environment); printed as one line (HTTP 400)."""


class ConfigError(SitePulseError):
    """A setting is wrong or points at something unusable; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        super().__init__(f"{setting}: {problem}")


class NotFound(SitePulseError):
    """The thing asked for does not exist, or the caller may not know that it does (HTTP 404)."""


class Conflict(SitePulseError):
    """The request is well formed but the current state forbids it (HTTP 409)."""


class InvalidInput(SitePulseError):
    """A value is well typed but unusable; the message names the field (HTTP 422)."""


class NotAuthenticated(SitePulseError):
    """No valid credentials were presented (HTTP 401)."""


class NotAllowed(SitePulseError):
    """The caller is known but may not do this (HTTP 403)."""


class TooLarge(SitePulseError):
    """The request body is larger than this route accepts (HTTP 413)."""


class UnsupportedType(SitePulseError):
    """The request body is of a media type this route does not read (HTTP 415)."""
