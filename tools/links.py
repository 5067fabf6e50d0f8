"""Links in the repository's Markdown, as GitHub reads them: the pattern that finds them, and which are local."""
from __future__ import annotations

import re

MARKDOWN_LINK = re.compile(r"(\]\()([^)\s]+)(\))")  # [text](target): groups "](", target, ")"
_ELSEWHERE = re.compile(r"^[a-z][a-z0-9+.-]*:|^#|^/", re.IGNORECASE)  # another site, an anchor, an absolute path


def is_relative(target: str) -> bool:
    """Whether ``target`` names a file relative to the one that holds the link."""
    return not _ELSEWHERE.match(target)
