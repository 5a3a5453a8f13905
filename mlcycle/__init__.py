"""mlcycle: declare an ML product's lifecycle, validate it, and carry it out."""

__version__ = "0.1.0"
