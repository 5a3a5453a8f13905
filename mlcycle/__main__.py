"""`python -m mlcycle` runs the command-line interface."""

from mlcycle.cli import main

if __name__ == "__main__":
    main()
