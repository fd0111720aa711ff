"""Feature types, styles and the diagnostic parts that define each style in the synthetic data.

Feature names follow the WikiChurches ontology (``building_parts.json`` ``meta``): leaf types such
as "Round Arch Window" have parents such as "Window" and "Round Arch", and "Blind Arcade" has
parents "Arcade" and "Blind". Only the types the generator draws, plus their ancestors, are listed.
"""

from __future__ import annotations

#: The four main styles of WikiChurches: Wikidata QID -> name.
STYLES: dict[str, str] = {
    "Q46261": "Romanesque",
    "Q176483": "Gothic",
    "Q236122": "Renaissance",
    "Q840829": "Baroque",
}
STYLE_QID: dict[str, str] = {name: qid for qid, name in STYLES.items()}

#: (name, parent names) in ``meta`` order; parents always precede their children.
FEATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Arch", ()),
    ("Round Arch", ("Arch",)),
    ("Pointed Arch", ("Arch",)),
    ("Window", ()),
    ("Portal", ()),
    ("Column", ()),
    ("Arcade", ("Arch",)),
    ("Blind", ()),
    ("Pediment", ()),
    ("Round Arch Window", ("Window", "Round Arch")),
    ("Round Arch Portal", ("Portal", "Round Arch")),
    ("Blind Arcade", ("Arcade", "Blind")),
    ("Pointed Arch Window", ("Window", "Pointed Arch")),
    ("Pointed Arch Portal", ("Portal", "Pointed Arch")),
    ("Rose Window", ("Window",)),
    ("Pinnacle", ()),
    ("Buttress", ()),
    ("Pilaster", ()),
    ("Column Portal", ("Portal", "Column")),
    ("Triangular Pediment", ("Pediment",)),
    ("Segmental Pediment", ("Pediment",)),
    ("Broken Pediment", ("Pediment",)),
    ("Volute", ()),
    ("Dome", ()),
)
FEATURE_ID: dict[str, int] = {name: i for i, (name, _) in enumerate(FEATURES)}

#: The diagnostic parts that define each style (style name -> feature names). A church of a
#: style carries only these as annotated elements (a two-style church: the union of both).
STYLE_FEATURES: dict[str, tuple[str, ...]] = {
    "Romanesque": ("Round Arch Window", "Round Arch Portal", "Blind Arcade"),
    "Gothic": ("Pointed Arch Window", "Pointed Arch Portal", "Rose Window", "Pinnacle",
               "Buttress"),
    "Renaissance": ("Triangular Pediment", "Pilaster", "Column Portal"),
    "Baroque": ("Volute", "Segmental Pediment", "Broken Pediment", "Dome"),
}


def meta() -> list[dict]:
    """The ``building_parts.json`` ``meta`` list: ``[{"name": str, "parents": [int, ...]}]``."""
    return [{"name": name, "parents": [FEATURE_ID[p] for p in parents]}
            for name, parents in FEATURES]
