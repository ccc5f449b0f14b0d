"""The typed config: defaults are valid, and mistakes are refused with a message naming the field."""
import pytest

from recplugin.config import ConfigError, RecConfig, from_dict, load_config, save_config


def test_defaults_are_valid():
    config = from_dict({})
    assert isinstance(config, RecConfig)
    assert config.scenarios == ["search", "feed", "discovery"]
    assert config.model.embedding_dim == 64


def test_yaml_round_trip(tmp_path):
    original = from_dict({"scenarios": ["feed", "ads"], "training": {"epochs": 7}})
    path = save_config(original, tmp_path / "c.yaml")
    assert load_config(path) == original


def test_unknown_key_is_refused_with_allowed_keys():
    with pytest.raises(ConfigError, match=r"training: unknown key\(s\) \['epoch'\]; allowed: .*'epochs'"):
        from_dict({"training": {"epoch": 3}})


def test_wrong_type_is_refused_with_field_path():
    with pytest.raises(ConfigError, match=r"model.embedding_dim: expected int, got str"):
        from_dict({"model": {"embedding_dim": "64"}})


def test_int_is_accepted_for_float():
    assert from_dict({"training": {"learning_rate": 1}}).training.learning_rate == 1.0


@pytest.mark.parametrize("scenarios", [[], ["feed", "feed"], ["home feed"]])
def test_bad_scenario_lists_are_refused(scenarios):
    with pytest.raises(ConfigError, match="scenario"):
        from_dict({"scenarios": scenarios})


@pytest.mark.parametrize("std", [0, -0.1])
def test_item_id_init_std_must_be_positive(std):
    with pytest.raises(ConfigError, match="model.item_id_init_std must be positive"):
        from_dict({"model": {"use_item_ids": True, "item_id_init_std": std}})


def test_relative_paths_resolve_against_workdir(tmp_path):
    config = from_dict({"workdir": str(tmp_path), "registry_url": "sqlite:///reg.db", "index": {"uri": "m.db"}})
    assert config.registry_sqlalchemy_url == f"sqlite:///{tmp_path}/reg.db"
    assert config.milvus_uri == f"{tmp_path}/m.db"
    assert from_dict({"index": {"uri": "http://milvus:19530"}}).milvus_uri == "http://milvus:19530"


def test_relative_workdir_is_pinned_at_load_time(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = from_dict({"workdir": "runs/a"})
    assert config.workdir == str(tmp_path / "runs" / "a")
    monkeypatch.chdir("/")
    saved = save_config(config, tmp_path / "saved.yaml")
    assert load_config(saved).path("registry.db") == tmp_path / "runs" / "a" / "registry.db"


def test_several_workers_need_a_milvus_server():
    with pytest.raises(ConfigError, match="recplugin milvus-server"):
        from_dict({"serving": {"workers": 2}})
    assert from_dict({"serving": {"workers": 2}, "index": {"uri": "http://127.0.0.1:19530"}}).serving.workers == 2


def test_merge_and_state_engine_and_prefix_are_validated():
    import pytest

    from recplugin.config import ConfigError, from_dict

    from recplugin.config import CHOICES

    for raw, field in (({"serving": {"merge": "sum"}}, "serving.merge"), ({"feast": {"state_engine": "pandas"}}, "feast.state_engine"),
                       ({"feast": {"prefix": "rec-"}}, "feast.prefix")):
        with pytest.raises(ConfigError, match=field):
            from_dict(raw)
    for path, allowed in CHOICES.items():  # every choice field names itself and what it allows
        section, name = path.split(".")
        with pytest.raises(ConfigError, match=rf"{path} must be one of \[{', '.join(repr(v) for v in allowed)}\], got 'nope'"):
            from_dict({section: {name: "nope"}})
    assert from_dict({"serving": {"merge": "interleave"}}).serving.merge == "interleave"
    with pytest.raises(ConfigError, match="training.softmax: full needs model.item_finetune: frozen"):
        from_dict({"training": {"softmax": "full"}, "model": {"item_finetune": "lora"}})
