"""mlcycle: declare an ML product's lifecycle, validate it, and carry it out."""

__version__ = "0.1.0"

DISTRIBUTION = "mlcycle-cli"
"""The name on the package index (`mlcycle` there is an unrelated project).

The import package and the command are `mlcycle`; `pip install mlcycle-cli`."""


def requirement() -> str:
    """The pip requirement for exactly this mlcycle, as generated files pin it."""
    return f"{DISTRIBUTION}=={__version__}"
