"""The one place the package version is written (the CLI, the API and ``/metrics`` report it)."""

__version__ = "0.1.0"
