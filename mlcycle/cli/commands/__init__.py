"""Command modules; importing one registers its commands on the app."""

from mlcycle.cli.commands import init  # noqa: F401  # isort: skip
from mlcycle.cli.commands import spec  # noqa: F401
