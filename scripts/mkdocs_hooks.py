"""MkDocs hooks for the documentation site (``hooks:`` in mkdocs.yml).

The docstrings use Sphinx cross-reference roles (``:func:`x```, ``:class:`~a.B```), which
the docstring parser leaves as text: ``:func:<code>x</code>``. The role prefix is dropped
here, and a ``~`` keeps only the last dotted part, as Sphinx shows it.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(
    r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):<code>(~?)([^<]*)</code>"
)


def _plain(match: re.Match[str]) -> str:
    short, name = match.group(1), match.group(2)
    return f"<code>{name.rsplit('.', 1)[-1] if short else name}</code>"


def on_page_content(html: str, **_: Any) -> str:
    return _ROLE.sub(_plain, html)
