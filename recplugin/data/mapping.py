"""How a team's own event and item tables map onto recplugin's schemas (the `source` section of the config)."""
from __future__ import annotations

from dataclasses import dataclass, field

TEXT_SEPARATOR = "; "  # between the "<name>: <value>" parts of an item's text


@dataclass
class EventColumns:
    """Which column of the team's event table holds each field, and how its values translate."""

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "event_timestamp"
    scenario: str = "scenario"  # "" = no such column: every event is in `scenario_constant` (or the only scenario)
    action: str = "action"  # "" = no such column: every event is `action_constant` (or the only action)
    query: str = ""  # "" = the table has no query column (no search text)
    timestamp_format: str = ""  # "" = ISO 8601 / datetime columns; "unix_s", "unix_ms", or a strftime format
    timezone: str = "UTC"  # for timestamps without a zone
    scenario_values: dict[str | int | float | bool, str] = field(default_factory=dict)  # team's value -> a scenario
    action_values: dict[str | int | float | bool, str] = field(default_factory=dict)  # team's value -> an action
    scenario_constant: str = ""
    action_constant: str = ""
    where: str = ""  # keep only rows matching this pandas expression over the table's columns, e.g. "stars >= 4"


@dataclass
class ItemColumns:
    """Which column of the team's item table holds each field ("" = absent: a default is used)."""

    item: str = "item_id"
    title: str = "title"
    text: str | list[str] = ""  # one column or several, each read as "<column>: <value>"; "" = the title is the text
    title_in_text: bool = True  # with `text` set, the title leads it as "title: <value>"; false: the text columns alone
    category: str = ""  # "" = no category
    scenarios: str = ""  # a list or comma-separated column of scenarios the item may be shown in; "" = every scenario
    created: str = ""  # "" = every item exists from the start


@dataclass
class SourceConfig:
    """The team's tables: column names, value maps, and string ids (hashed to stable 62-bit integers when true)."""

    events: EventColumns = field(default_factory=EventColumns)
    items: ItemColumns = field(default_factory=ItemColumns)
    string_ids: bool = False
    holdout: str = ""  # your held-out users: a table with the events' user column and `split` (validation | test)


def text_columns(columns: ItemColumns) -> list[str]:
    """The item table's text columns, in the order the item tower reads them."""
    return [columns.text] if isinstance(columns.text, str) and columns.text else list(columns.text or [])
