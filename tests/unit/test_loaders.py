"""Real-data loaders (skipped when ../shared/data is absent)."""
import pytest

from recplugin.data.loaders import load_amazon_food_kitchen, load_movielens
from recplugin.data.schema import EVENT_SCHEMA, ITEM_SCHEMA, check_events, check_items
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.realdata


def _need(name):
    if not (SHARED_DATA / name).is_dir():
        pytest.skip(f"{SHARED_DATA / name} is absent (public data is never committed; see ../shared/data/README.md)")
    return SHARED_DATA / name


def test_movielens_matches_published_statistics():
    data = load_movielens(_need("ml-1m"))
    assert len(data.events) == 999_611
    assert data.events["user_id"].nunique() == 6040 and data.events["item_id"].nunique() == 3416
    check_events(data.events, data.scenarios, ["click"])
    check_items(data.items)
    assert data.events.groupby("user_id")["event_timestamp"].apply(lambda t: t.is_monotonic_increasing).all()
    assert list(data.items.columns) == ITEM_SCHEMA.names and list(data.events.columns) == EVENT_SCHEMA.names
    assert "Raiders of the Lost Ark" in data.items.set_index("item_id").loc[1, "text"]
    assert data.holdout["split"].value_counts().to_dict() == {"test": 6040, "excluded": 5528, "validation": 512}  # gSASRec


def test_amazon_domains_become_scenarios():
    data = load_amazon_food_kitchen(_need("amazon-food-kitchen"))
    check_events(data.events, data.scenarios, ["click"])
    check_items(data.items)
    assert len(data.items) == 36_298
    assert set(data.events["scenario"]) == {"food", "kitchen"}
    food = data.events[data.events.scenario == "food"]["item_id"]
    assert food.max() <= 8660 and data.events[data.events.scenario == "kitchen"]["item_id"].min() >= 8661
    per_user = data.events.groupby("user_id")["scenario"].nunique()
    assert (per_user == 2).sum() > 7000
