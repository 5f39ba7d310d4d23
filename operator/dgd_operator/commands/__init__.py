"""Subcommands of the `dgd` CLI; each module exposes register(subparsers) and imports heavy things lazily."""
