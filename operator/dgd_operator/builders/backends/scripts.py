"""Rendering of the shell launch scripts (Jinja2 templates in `templates/*.sh.j2`).

Templates render one command-line string for `sh -c`. Filters: `shq` (`sh_quote`, for direct
`sh -c` evaluation), `bashq` (Dynamo's `bash -c` quoter) and `shlex` (`shlex.quote`).
Undefined template variables are errors, so a missing value never renders as an empty string.
"""

from __future__ import annotations

import shlex
from functools import cache
from importlib import resources
from typing import Any

import jinja2

from dgd_operator.builders.backends.quoting import bash_c_quote, sh_quote


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dgd_operator.builders.backends", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # shell text, not HTML; quoting is explicit via the filters
        keep_trailing_newline=False,
        # The templates ship with the package and never change while it runs: without this,
        # every render of every build stats the template file to see whether it changed.
        auto_reload=False,
    )
    env.filters["shq"] = sh_quote
    env.filters["bashq"] = bash_c_quote
    env.filters["shlex"] = shlex.quote
    return env


def render(template: str, **values: Any) -> str:
    """Render `templates/<template>` and strip surrounding whitespace."""
    return _environment().get_template(template).render(**values).strip()


@cache
def launch_helper_source(module: str) -> str:
    """Source text of a stdlib/ray-only helper in `launch/` (shipped in a ConfigMap, not imported).

    Read once per process: every multinode build ships it, and the file does not change.
    """
    source = resources.files(f"{__package__}.launch").joinpath(f"{module}.py")
    return source.read_text(encoding="utf-8")
