"""Command-line entry points; one module per command group, wired in :mod:`core.cli.main`."""
