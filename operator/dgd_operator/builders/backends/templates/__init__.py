"""Jinja2 shell launch-script templates (package data: `*.sh.j2`)."""
