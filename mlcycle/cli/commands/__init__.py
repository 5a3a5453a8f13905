"""Command modules; importing one registers its commands on the app."""

from mlcycle.cli.commands import spec  # noqa: F401
