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


def test_the_bento_pins_what_pyproject_pins():
    """Every pinned or capped runtime dependency of the package has the same specifier in the Bento (bentoml itself is the
    image's own; torch is pinned to the CPU build the Makefile installs)."""
    import re
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bento = yaml.safe_load((ROOT / "bentos" / "bentofile.yaml").read_text())["python"]["packages"]
    name = lambda spec: re.split(r"[<>=!\[; ]", spec, maxsplit=1)[0].lower()  # noqa: E731
    in_bento = {name(spec): spec for spec in bento}
    for spec in pyproject:
        if name(spec) in ("bentoml", "torch", "matplotlib"):  # the base image's / the Makefile's / offline plots only
            continue
        assert name(spec) in in_bento, f"{spec} is a runtime dependency missing from bentos/bentofile.yaml"
        if re.search(r"[<>=]", spec):
            assert in_bento[name(spec)] == spec, f"the Bento has {in_bento[name(spec)]!r}, pyproject {spec!r}"


def test_compose_service_and_offline_job_share_the_workdir_and_run_real_stages():
    """The live event log and the artifacts live on one volume that both containers mount at the config's workdir, and
    the offline job runs stages the CLI has."""
    import re

    from recplugin.cli import COMMANDS

    config = load_config(ROOT / "infra" / "recplugin.production.yaml")
    services = yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())["services"]
    for name in ("recplugin", "offline"):
        mounts = dict(volume.split(":")[:2][::-1] for volume in services[name]["volumes"])
        assert mounts[config.workdir] == "shared"
        assert mounts[services[name]["environment"]["RECPLUGIN_CONFIG"]] == "./recplugin.production.yaml"
    stages = re.findall(r"python -m recplugin\.cli ([\w-]+)", services["offline"]["command"][0])
    assert stages == ["apply", "materialize", "build-training-set", "train", "index"] and set(stages) <= set(COMMANDS)
    assert "curl" not in " ".join(services["recplugin"]["healthcheck"]["test"])  # not in the Bento image
