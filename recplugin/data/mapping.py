"""How a team's own event and item tables map onto recplugin's schemas (the `source` section of the config)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EventColumns:
    """Which column of the team's event table holds each field, and how its values translate."""

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "event_timestamp"
    scenario: str = "scenario"
    action: str = "action"
    query: str = ""  # "" = the table has no query column (no search text)
    timestamp_format: str = ""  # "" = ISO 8601 / datetime columns; "unix_s", "unix_ms", or a strftime format
    timezone: str = "UTC"  # for timestamps without a zone
    scenario_values: dict[str, str] = field(default_factory=dict)  # the team's value -> a configured scenario
    action_values: dict[str, str] = field(default_factory=dict)  # the team's value -> a configured action


@dataclass
class ItemColumns:
    """Which column of the team's item table holds each field ("" = absent: a default is used)."""

    item: str = "item_id"
    title: str = "title"
    text: str = ""  # "" = the title is the text
    category: str = ""  # "" = no category
    scenarios: str = ""  # a list or comma-separated column of scenarios the item may be shown in; "" = every scenario
    created: str = ""  # "" = every item exists from the start


@dataclass
class SourceConfig:
    """The team's tables: column names, value maps, and string ids (hashed to stable 62-bit integers when true)."""

    events: EventColumns = field(default_factory=EventColumns)
    items: ItemColumns = field(default_factory=ItemColumns)
    string_ids: bool = False
