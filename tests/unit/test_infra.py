"""Deployment files that cannot run here (no Docker engine) are still checked for consistency."""
from pathlib import Path

import yaml

from recplugin.config import load_config
from recplugin.features.store import repo_config

ROOT = Path(__file__).resolve().parents[2]


def test_production_config_is_valid_and_points_at_compose_services():
    config = load_config(ROOT / "infra" / "recplugin.production.yaml")
    compose = yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert config.index.uri == "http://milvus:19530" and "19530:19530" in services["milvus"]["ports"]
    assert config.feast.redis.startswith("redis:") and "postgres:5432" in config.registry_url
    assert services["recplugin"]["environment"]["RECPLUGIN_CONFIG"].endswith("recplugin.yaml")
    assert set(services["recplugin"]["depends_on"]) == {"postgres", "redis", "milvus"}


def test_production_feature_store_yaml_renders_to_redis_and_postgres():
    config = load_config(ROOT / "infra" / "recplugin.production.yaml")
    repo = repo_config(config)
    assert repo.online_store.type == "redis"  # a hung Redis times out instead of stalling the service
    assert repo.online_store.connection_string == "redis:6379,socket_timeout=2.0,socket_connect_timeout=2.0"
    assert repo.registry.path == "postgresql+psycopg://postgres@postgres:5432/recplugin"
    assert repo.offline_store.type == "duckdb"


def test_bentofile_names_the_real_service_and_avoids_lockfile_resolution():
    bentofile = yaml.safe_load((ROOT / "bentos" / "bentofile.yaml").read_text())
    module, _, name = bentofile["service"].partition(":")
    assert module == "recplugin.serving.service" and name == "RecPlugin"
    assert bentofile["python"]["lock_packages"] is False
    assert "torch==2.13.0" in bentofile["python"]["packages"] and "bentoml" not in " ".join(bentofile["python"]["packages"])
    source = (ROOT / "recplugin" / "serving" / "service.py").read_text()
    assert f"class {name}" in source
