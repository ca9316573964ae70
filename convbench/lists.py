"""Comma lists as every option and setting takes them: `--mode eager,compile`, `--arch a,b`, `--format csv,md`."""
from __future__ import annotations

from convbench.errors import UserError


def parse_list(text: str, what: str = "a comma list") -> tuple[str, ...]:
    """Comma text -> its items; an empty item (`eager,,compile`, a trailing comma) is refused, as --batch-size does."""
    items = tuple(v.strip() for v in text.split(","))
    if not any(items):
        raise UserError(f"{what} is empty")
    if not all(items):
        raise UserError(f"{what} has an empty item: {text!r}")
    return items
