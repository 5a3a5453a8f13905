"""Command modules; importing one registers its commands on the app (in help order)."""

from mlcycle.cli.commands import init  # noqa: F401  # isort: skip
from mlcycle.cli.commands import spec  # noqa: F401  # isort: skip
from mlcycle.cli.commands import learn  # noqa: F401  # isort: skip
from mlcycle.cli.commands import runs  # noqa: F401  # isort: skip
from mlcycle.cli.commands import serving  # noqa: F401  # isort: skip
from mlcycle.cli.commands import release  # noqa: F401  # isort: skip
from mlcycle.cli.commands import stages  # noqa: F401  # isort: skip
from mlcycle.cli.commands import registry  # noqa: F401  # isort: skip
from mlcycle.cli.commands import export  # noqa: F401  # isort: skip
from mlcycle.cli.commands import deploy  # noqa: F401  # isort: skip
from mlcycle.cli.commands import update  # noqa: F401  # isort: skip
from mlcycle.cli.commands import report  # noqa: F401  # isort: skip
