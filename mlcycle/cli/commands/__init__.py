"""Command modules: each declares its commands on its own `app = Commands()` and never
imports the root app; `mlcycle.cli.app.COMMANDS` lists them and adds them lazily."""
