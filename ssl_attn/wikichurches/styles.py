"""Architectural-style labels: which of an image's styles becomes its training label."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MAIN_STYLES", "MAIN_STYLE_NAMES", "StyleRule", "style_labels"]

#: The four main styles of WikiChurches, in the dataset's usual order (Wikidata QIDs).
MAIN_STYLES: tuple[str, ...] = ("Q46261", "Q176483", "Q236122", "Q840829")
#: Their English names (used when ``style_names.txt`` is absent).
MAIN_STYLE_NAMES: dict[str, str] = {
    "Q46261": "Romanesque",
    "Q176483": "Gothic",
    "Q236122": "Renaissance",
    "Q840829": "Baroque",
}

MultiPolicy = Literal["first", "priority", "drop"]
_POLICIES = ("first", "priority", "drop")


@dataclass(frozen=True)
class StyleRule:
    """How an image's list of style QIDs becomes one training label.

    Attributes
    ----------
    main_styles
        The candidate labels, an ordered tuple of QIDs (default: the four main styles).
    multi
        What to do when an image carries more than one main style:
        ``"first"`` (default) — the first main style in the image's own style list;
        ``"priority"`` — the earliest one in ``main_styles`` order;
        ``"drop"`` — no label (None).
    Images with no main style get None under every policy. The full style list is always kept
    next to the label (``styles`` column); the rule only picks the label.
    """

    main_styles: tuple[str, ...] = MAIN_STYLES
    multi: MultiPolicy = "first"

    def __post_init__(self) -> None:
        if self.multi not in _POLICIES:
            raise ValueError(f"StyleRule.multi must be one of {_POLICIES}; got {self.multi!r}")
        object.__setattr__(self, "main_styles", tuple(self.main_styles))
        if len(set(self.main_styles)) != len(self.main_styles) or not self.main_styles:
            raise ValueError(
                f"StyleRule.main_styles must be a non-empty tuple of distinct QIDs; got "
                f"{self.main_styles!r}"
            )

    def label(self, styles: Iterable[str] | None) -> str | None:
        """The training label (a QID from ``main_styles``) for one style list, or None."""
        if styles is None:
            return None
        if isinstance(styles, str):  # a bare QID rather than a list of them
            styles = (styles,)
        present: list[str] = []
        for s in styles:
            if s in self.main_styles and s not in present:
                present.append(s)
        if not present:
            return None
        if len(present) == 1:
            return present[0]
        if self.multi == "drop":
            return None
        if self.multi == "priority":
            return min(present, key=self.main_styles.index)
        return present[0]


def style_labels(df: pd.DataFrame, rule: StyleRule | None = None) -> pd.Series:
    """Training labels for every row of a table with a ``styles`` column.

    ``df`` is e.g. ``WikiChurches.churches`` or ``WikiChurches.images``; each ``styles`` entry
    is a sequence of QIDs. Returns an object Series (same index as ``df``, name ``"style"``)
    holding a QID or None per row, picked by ``rule`` (default ``StyleRule()``).
    """
    import pandas as pd

    if "styles" not in df.columns:
        raise ValueError(
            f"style_labels needs a 'styles' column; got columns {list(df.columns)}"
        )
    rule = rule or StyleRule()
    return pd.Series([rule.label(s) for s in df["styles"]], index=df.index, name="style",
                     dtype=object)
