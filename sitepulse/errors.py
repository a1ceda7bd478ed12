"""Errors a user can cause: the CLI prints them as one line instead of a traceback."""


class SitePulseError(Exception):
    """A problem the user can fix (configuration, input, environment); printed as one line."""


class ConfigError(SitePulseError):
    """A setting is wrong or points at something unusable; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        super().__init__(f"{setting}: {problem}")
