"""A team's own event and item tables (CSV or parquet: a file, a glob or a folder) mapped onto recplugin's schemas, with
validation that names the column, the row and what is allowed."""
from __future__ import annotations

import glob
import hashlib
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds

from recplugin.data.mapping import TEXT_SEPARATOR, EventColumns, ItemColumns, text_columns
from recplugin.data.schema import SchemaError

ITEM_KEYS = "item_keys.parquet"  # item_id (the stable hash) -> key (the team's own id), for answers in the team's ids
ID_BITS = 62  # stable ids stay inside the API's user_id bound (serving.max_user_id = 2**62)


def stable_id(value: object) -> int:
    """A team's string id as a stable non-negative 62-bit integer (the same everywhere: blake2b of its UTF-8 text)."""
    digest = hashlib.blake2b(str(value).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - ID_BITS)


def _dataset(location: str) -> ds.Dataset:
    """A CSV or parquet file, a glob of them, or a folder of parquet files, opened without reading its rows."""
    paths = sorted(glob.glob(location)) if any(c in location for c in "*?[") else [location]
    if not paths or not all(Path(p).exists() for p in paths):
        raise FileNotFoundError(f"no table at {location!r}")
    csv = all(str(p).endswith((".csv", ".csv.gz")) for p in paths)
    return ds.dataset(paths if len(paths) > 1 else paths[0], format="csv" if csv else "parquet")


def read_table(location: str) -> pd.DataFrame:
    """Every row of a CSV or parquet file, a glob of them, or a folder of parquet files."""
    return _dataset(location).to_table().to_pandas()


def check_header(location: str, columns: EventColumns | ItemColumns, table: str) -> None:
    """Fail on the header alone (before any row is read) when a mapped column is not in the table."""
    present = _dataset(location).schema.names
    for name, column in vars(columns).items():
        if name in ("timestamp_format", "timezone", "scenario_constant", "action_constant", "where"):
            continue
        for one in (column if isinstance(column, list) else [column]):
            if isinstance(one, str) and one and one not in present:
                raise SchemaError(f"{table}: column {one!r} (source.{table}.{name}) is missing; the table has {present}")


def _first_bad(frame: pd.DataFrame, bad: pd.Series) -> str:
    """'row N' (0-based, in the table as read) of the first offending row, and how many there are."""
    rows = bad[bad].index
    return f"row {rows[0]}" + (f" (and {len(rows) - 1} more)" if len(rows) > 1 else "")


def _value(values: pd.Series, bad: pd.Series) -> object:
    """The first offending value as plain Python (for the message)."""
    value = values[bad].iloc[0]
    return value.item() if hasattr(value, "item") else value


def _column(frame: pd.DataFrame, name: str, field: str, table: str) -> pd.Series:
    if name not in frame.columns:
        raise SchemaError(f"{table}: column {name!r} (source.{table}.{field}) is missing; the table has {list(frame.columns)}")
    return frame[name]


def _ids(values: pd.Series, column: str, table: str, string_ids: bool) -> pd.Series:
    """Integer ids as given, or stable hashes of string ids; nulls and (without string_ids) non-integers refused."""
    nulls = values.isna()
    if nulls.any():
        raise SchemaError(f"{table}: column {column!r} has a null id at {_first_bad(values.to_frame(), nulls)}")
    if string_ids:
        return values.map(stable_id).astype("int64")
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() | (numbers < 0) | (numbers != numbers.round())
    if bad.any():
        raise SchemaError(f"{table}: column {column!r} has {_value(values, bad)!r} at {_first_bad(values.to_frame(), bad)}; "
                          "ids must be non-negative integers, or set source.string_ids: true to hash string ids")
    return numbers.astype("int64")


def _translated(values: pd.Series, mapping: dict, allowed: list[str], column: str, what: str) -> pd.Series:
    """The team's values through its value map (keys of any scalar type, matched as text); anything not allowed is
    refused with the row."""
    by_text = {str(key): value for key, value in mapping.items()}
    translated = values.astype("string").map(lambda v: by_text.get(v, v) if v is not pd.NA else v)
    bad = ~translated.isin(allowed)
    if bad.any():
        raise SchemaError(f"events: column {column!r} has {_value(values, bad)!r} at {_first_bad(values.to_frame(), bad)}, "
                          f"which is not a configured {what} {allowed} (map it with source.events.{what}_values)")
    return translated.astype(object)


def _timestamps(values: pd.Series, columns: EventColumns) -> pd.Series:
    """UTC timestamps from ISO strings, datetimes, unix seconds/milliseconds or a strftime format."""
    fmt = columns.timestamp_format
    if fmt in ("unix_s", "unix_ms"):
        parsed = pd.to_datetime(pd.to_numeric(values, errors="coerce"), unit=fmt[5:], utc=True, errors="coerce")
    else:
        parsed = pd.to_datetime(values, format=fmt or "ISO8601", errors="coerce")
        if parsed.dt.tz is None:
            parsed = parsed.dt.tz_localize(columns.timezone)
        parsed = parsed.dt.tz_convert("UTC")
    bad = parsed.isna()
    if bad.any():
        raise SchemaError(f"events: column {columns.timestamp!r} has {_value(values, bad)!r} at {_first_bad(values.to_frame(), bad)}, "
                          f"which does not parse as {fmt or 'ISO 8601'} (set source.events.timestamp_format)")
    return parsed


def _filtered(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """The rows matching `source.events.where` (a pandas expression over the table's own columns)."""
    if not where:
        return frame
    try:
        return frame.query(where)
    except Exception as error:  # a bad expression or an unknown column: say which, and what the table has
        raise SchemaError(f"events: source.events.where {where!r} does not evaluate ({type(error).__name__}: {error}); "
                          f"the table has {list(frame.columns)}") from None


def _constant_or_column(frame: pd.DataFrame, columns: EventColumns, field: str, allowed: list[str]) -> pd.Series:
    """A scenario or action column through its value map, or (column "") one value for every row: `<field>_constant`,
    else the only configured one."""
    column, constant = getattr(columns, field), getattr(columns, f"{field}_constant")
    if column:
        return _translated(_column(frame, column, field, "events"), getattr(columns, f"{field}_values"), allowed, column, field)
    if not constant and len(allowed) != 1:
        raise SchemaError(f"events: source.events.{field} is empty and {len(allowed)} {field}s are configured: set "
                          f"source.events.{field}_constant to one of {allowed}")
    value = constant or allowed[0]
    if value not in allowed:
        raise SchemaError(f"events: source.events.{field}_constant {value!r} is not a configured {field} {allowed}")
    return pd.Series(value, index=frame.index, dtype=object)


def map_events(frame: pd.DataFrame, columns: EventColumns, scenarios: list[str], actions: list[str], string_ids: bool) -> pd.DataFrame:
    """The team's event table (its rows matching `where`) in recplugin's event schema."""
    frame = _filtered(frame.reset_index(drop=True), columns.where)  # rows keep their numbers in the table as read
    get = lambda field: _column(frame, getattr(columns, field), field, "events")
    query = get("query").fillna("").astype(str) if columns.query else pd.Series("", index=frame.index)
    return pd.DataFrame({
        "user_id": _ids(get("user"), columns.user, "events", string_ids),
        "item_id": _ids(get("item"), columns.item, "events", string_ids),
        "scenario": _constant_or_column(frame, columns, "scenario", scenarios),
        "action": _constant_or_column(frame, columns, "action", actions),
        "query": query.where(query != "", None),
        "event_timestamp": _timestamps(get("timestamp"), columns),
    }).reset_index(drop=True)


def map_holdout(frame: pd.DataFrame, user_column: str, string_ids: bool) -> pd.DataFrame:
    """A team's held-out users (their last event is the validation or test label; `excluded`: neither)."""
    users = _ids(_column(frame, user_column, "user", "holdout"), user_column, "holdout", string_ids)
    split = _column(frame, "split", "holdout", "holdout").astype(str)
    bad = ~split.isin(["validation", "test", "excluded"])
    if bad.any():
        raise SchemaError(f"holdout: column 'split' has {_value(split, bad)!r} at {_first_bad(frame, bad)}; allowed: "
                          "validation, test, excluded")
    return pd.DataFrame({"user_id": users, "split": split})


def item_text(frame: pd.DataFrame, columns: ItemColumns, title: pd.Series) -> pd.Series:
    """What the item tower reads: the title alone, or "title: <title>; <column>: <value>; ..." over the text columns
    (without the title part when `title_in_text` is false)."""
    names = text_columns(columns)
    if not names:
        return title
    parts = [("title", title)] if columns.title_in_text else []
    parts += [(name, _column(frame, name, "text", "items").fillna("").astype(str)) for name in names]
    text = parts[0][0] + ": " + parts[0][1]
    for name, values in parts[1:]:
        text = text + f"{TEXT_SEPARATOR}{name}: " + values
    return text


def map_items(frame: pd.DataFrame, columns: ItemColumns, scenarios: list[str], string_ids: bool) -> pd.DataFrame:
    """The team's item table in recplugin's item schema."""
    frame = frame.reset_index(drop=True)
    get = lambda field: _column(frame, getattr(columns, field), field, "items")
    ids = _ids(get("item"), columns.item, "items", string_ids)
    duplicated = ids.duplicated()
    if duplicated.any():
        raise SchemaError(f"items: column {columns.item!r} repeats {_value(frame[columns.item], duplicated)!r} at "
                          f"{_first_bad(frame, duplicated)}; item ids must be unique")
    title = get("title").fillna("").astype(str)
    eligible = [list(scenarios)] * len(frame)
    if columns.scenarios:
        eligible = [[s.strip() for s in (v.split(",") if isinstance(v, str) else list(v))] for v in get("scenarios")]
        bad = pd.Series([not set(e) <= set(scenarios) for e in eligible])
        if bad.any():
            raise SchemaError(f"items: column {columns.scenarios!r} has {eligible[bad.idxmax()]} at {_first_bad(frame, bad)}; "
                              f"allowed scenarios: {scenarios}")
    created = (pd.to_datetime(get("created"), utc=True, errors="raise") if columns.created
               else pd.Series([pd.Timestamp(0, tz="UTC")] * len(frame)))
    return pd.DataFrame({
        "item_id": ids, "title": title,
        "text": item_text(frame, columns, title),
        "category": get("category").fillna("").astype(str) if columns.category else "",
        "scenarios": eligible, "created_timestamp": created,
    })


def write_item_keys(raw_ids: pd.Series, item_ids: pd.Series, data_dir: Path) -> None:
    """Remember each item's own id beside its stable hash, for answers in the team's ids."""
    pd.DataFrame({"item_id": item_ids.astype("int64").to_numpy(), "key": raw_ids.astype(str).to_numpy()}).to_parquet(
        data_dir / ITEM_KEYS, index=False)
