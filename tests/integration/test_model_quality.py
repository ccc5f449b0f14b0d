"""The trained towers beat popularity on the generated data (the generator's interest structure is learnable)."""
import json

import pytest

pytestmark = pytest.mark.integration


def test_model_beats_popularity_overall(built_pipeline):
    model, popularity = built_pipeline.metrics["two-tower"]["overall"], built_pipeline.metrics["popularity"]["overall"]
    assert model["users"] == popularity["users"] > 100
    assert model["NDCG@10"] > 2 * popularity["NDCG@10"], json.dumps(built_pipeline.metrics, indent=1)
    assert model["Recall@50"] > popularity["Recall@50"]


def test_model_beats_popularity_in_the_non_search_scenarios(built_pipeline):
    for scenario in ("feed", "discovery"):
        assert built_pipeline.metrics["two-tower"][scenario]["Recall@50"] > built_pipeline.metrics["popularity"][scenario]["Recall@50"]


def test_artifact_has_curve_plot_and_metrics(built_pipeline):
    from recplugin.registry.models import ModelRegistry

    entry = ModelRegistry(built_pipeline.config.registry_sqlalchemy_url).get(built_pipeline.version)
    assert entry.status == "serving" and entry.collection == built_pipeline.collection
    from pathlib import Path

    artifact = Path(entry.artifact_uri)
    curve = json.loads((artifact / "training_curve.json").read_text())
    assert len(curve) == built_pipeline.config.training.epochs
    assert (artifact / "training_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_max_and_interleaved_merges_are_reported_with_coverage(built_pipeline):
    """With K=2 interests: the max merge ranks as the full ranking does (up to ties), interleaving draws on both
    interests in every answer and never covers fewer categories on average."""
    metrics = built_pipeline.metrics
    merged_max, interleaved = metrics["two-tower (max merge)"]["overall"], metrics["two-tower (interleave merge)"]["overall"]
    assert merged_max["users"] == interleaved["users"] == metrics["two-tower"]["overall"]["users"]
    assert merged_max["Recall@200"] >= metrics["two-tower"]["overall"]["Recall@200"]  # topk's ties vs pessimistic ties
    assert interleaved["multi_interest@10"] == 1.0 and interleaved["multi_interest@10"] >= merged_max["multi_interest@10"]
    assert 1.0 <= merged_max["categories@10"] <= 10.0 and 1.0 <= interleaved["categories@10"] <= 10.0
