"""Tables that fit the terminal with every figure whole.

A column is kept or left out whole, never cut: the columns are ranked (0 = always shown), and the least
important ones are left out until the table fits the console's width; what was left out is named in one line
under the table (the files hold every column). Long text (verdicts, notes) goes under the table, wrapped."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from convbench.units import missing

GAP = 2  # spaces between columns


@dataclass
class Column:
    header: str
    rank: int = 0                       # 0: always shown; higher: left out earlier
    justify: str = "right"
    cells: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        return max([len(self.header), *(len(c) for c in self.cells)])


def fit(columns: list[Column], width: int) -> tuple[list[Column], list[Column]]:
    """(kept, left out): the highest ranks go first, the last-listed of a rank before the first."""
    kept = list(columns)
    order = sorted((c for c in columns if c.rank > 0), key=lambda c: (-c.rank, -columns.index(c)))
    for column in order:
        if sum(c.width for c in kept) + GAP * (len(kept) - 1) <= width:
            break
        kept.remove(column)
    return kept, [c for c in columns if c not in kept]


def table(title: str | None, columns: list[Column], width: int) -> tuple[Table, list[Column]]:
    """A borderless rich table of the columns that fit in `width`, and the columns left out."""
    kept, left_out = fit(columns, width)
    # padding 1 on each side, none at the edges: GAP spaces between columns, none outside them
    t = Table(title=title, title_justify="left", box=None, pad_edge=False, padding=(0, GAP // 2), collapse_padding=False,
              header_style="bold underline", expand=False)
    for c in kept:
        # a fixed width and no wrapping: a figure is shown whole, or its column is not shown at all
        t.add_column(c.header, justify=c.justify, no_wrap=True, min_width=c.width, max_width=c.width)
    for i in range(len(kept[0].cells) if kept else 0):
        t.add_row(*(c.cells[i] for c in kept))
    return t, left_out


def left_out_line(left_out: list[Column], where: str) -> str | None:
    if not left_out:
        return None
    return f"not shown at this width: {', '.join(c.header for c in left_out)} (in {where}; a wider terminal shows more)"


def wrap(text: str, width: int, indent: str = "  ") -> list[str]:
    return textwrap.wrap(text, width=max(20, width), initial_indent=indent, subsequent_indent=indent + "  ",
                         break_on_hyphens=False) or [indent]


def say(console: Console, text: str | None, style: str | None = "dim", indent: str = "") -> None:
    """A line of text under a table, wrapped at the console's width (nothing when there is no text)."""
    for line in wrap(text, console.width, indent) if text else []:
        console.print(line, style=style, highlight=False, markup=False)


def si(value: Any, digits: int = 3) -> str:
    """A count in a unit that fits: 112, 8.45k, 11.7M, 1.81G ('-' when missing)."""
    if missing(value):
        return "-"
    v = float(value)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.{digits}g}{unit}" if v / scale < 1000 else f"{v / scale:,.0f}{unit}"
    return f"{v:.{digits}g}" if not float(v).is_integer() else f"{int(v):,}"


def num(value: Any, fmt: str) -> str:
    if missing(value):
        return "-"
    return format(value, fmt)


def mib(value: Any) -> str:
    """Bytes as MiB with precision that fits small and large alike."""
    if missing(value):
        return "-"
    m = float(value) / 2**20
    return f"{m:,.0f}" if m >= 100 else f"{m:.1f}" if m >= 1 else f"{m:.2f}" if m >= 0.01 else f"{m:.1e}"


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def kept(n: int, word: str, where: object) -> str:
    """'the 3 finished rows are in DIR/profile.csv': what an interrupted command kept, and where."""
    return f"the {plural(n, word)} {'is' if n == 1 else 'are'} in {where}"
