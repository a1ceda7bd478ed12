"""SitePulse's small shared kernel: settings, database access, embedded runtime and the CLI."""

__version__ = "0.1.0"
