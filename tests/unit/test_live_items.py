"""The live item log: one write per batch, the last line of an item wins, torn lines skipped, folded once into the
catalogue (and the item key map)."""
import pandas as pd

from recplugin.data.live_items import LIVE_ITEMS, NewItem, append_items, fold_live_items, read_live_items
from recplugin.data.schema import write_items
from recplugin.data.tables import ITEM_KEYS


def test_fold_adds_each_new_item_once_with_its_own_id(tmp_path):
    catalog = tmp_path / "items.parquet"
    write_items(pd.DataFrame({"item_id": [1, 2], "title": ["a", "b"], "text": ["a", "b"], "category": ["", ""],
                              "scenarios": [["feed"], ["feed"]],
                              "created_timestamp": pd.to_datetime([0, 0], unit="s", utc=True)}), catalog)
    log = tmp_path / LIVE_ITEMS
    append_items(log, [NewItem(2, "b again", "b again"), NewItem(7, "lamp", "lamp v1", "home", ["feed"], 1.7e9, "sku-7")])
    append_items(log, [NewItem(7, "lamp", "lamp v2", "home", ["feed"], 1.7e9, "sku-7")])
    with open(log, "ab") as handle:
        handle.write(b'{"item_id": 9, "tit')  # a crash mid-write
    assert [(item.item_id, item.text) for item in read_live_items(log)] == [(2, "b again"), (7, "lamp v2")]

    assert fold_live_items(tmp_path, catalog) == 1
    folded = pd.read_parquet(catalog).set_index("item_id")
    assert folded.loc[7, "text"] == "lamp v2" and folded.loc[2, "title"] == "b" and len(folded) == 3
    assert list(folded.loc[7, "scenarios"]) == ["feed"] and folded.loc[7, "created_timestamp"].year == 2023
    assert pd.read_parquet(tmp_path / ITEM_KEYS).to_dict("records") == [{"item_id": 7, "key": "sku-7"}]
    assert fold_live_items(tmp_path, catalog) == 0  # folding again changes nothing
    assert len(pd.read_parquet(catalog)) == 3
