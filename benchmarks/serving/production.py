"""Build a production-style workdir from a built embedded one: Feast on Redis with a PostgreSQL registry, the model
registry on PostgreSQL, Milvus reached over gRPC (`recplugin milvus-server`), two BentoML workers.

    python benchmarks/serving/production.py --source .recplugin/demo --target .recplugin/production
    python benchmarks/serving/run.py --workdir .recplugin/production --items 100000 --label production

Uses the local servers (Redis 127.0.0.1:6379, PostgreSQL 127.0.0.1:5432, database recplugin_bench, created if missing).
The trained model is reused: the same artifact is registered in the PostgreSQL registry and indexed again.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import sqlalchemy

from recplugin import pipeline
from recplugin.config import load_config, save_config
from recplugin.registry.models import ModelRegistry

DATABASE = "recplugin_bench"
SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432"
MILVUS_ADDRESS = "127.0.0.1:19539"


def fresh_database() -> str:
    """The benchmark's own PostgreSQL database, empty (it never touches the test database's tables, and no registry row
    of an earlier run points outside this workdir)."""
    engine = sqlalchemy.create_engine(f"{SERVER_URL}/test", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{DATABASE}"'))
    engine.dispose()
    return f"{SERVER_URL}/{DATABASE}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=".recplugin/demo")
    parser.add_argument("--target", default=".recplugin/production")
    args = parser.parse_args()
    source = load_config(Path(args.source) / pipeline.CONFIG_FILE)
    database = fresh_database()
    target = Path(args.target).resolve()
    shutil.rmtree(target, ignore_errors=True)
    embedded = pipeline.with_overrides(source, feast={"store_yaml": "feature_store.production.yaml", "project": "recplugin_bench",
                                                      "postgres_url": database}, serving={"workers": 1})
    embedded = pipeline.with_overrides(embedded, index={"uri": "milvus.db"})
    embedded.workdir = str(target)
    embedded.registry_url = database
    shutil.copytree(source.data_dir, embedded.data_dir)
    pipeline.apply(embedded)
    pipeline.materialize(embedded)
    registry = ModelRegistry(embedded.registry_sqlalchemy_url)
    served = ModelRegistry(source.registry_sqlalchemy_url).latest(status="serving")
    if served.version not in {entry.version for entry in registry.list()}:  # a copy under this workdir's artifact root
        artifact = embedded.models_dir / served.version
        shutil.copytree(served.artifact_uri, artifact, dirs_exist_ok=True)
        registry.register(served.version, served.config, served.metrics, str(artifact))
    server = pipeline.start_milvus_server(embedded, MILVUS_ADDRESS)
    try:
        production = pipeline.with_overrides(embedded, index={"uri": f"http://{MILVUS_ADDRESS}"}, serving={"workers": 2})
        pipeline.index(production, served.version)
    finally:
        pipeline.stop_service(server)
    save_config(production, pipeline.workdir_config_path(production))
    print(f"production-style workdir ready: {target} (Redis, PostgreSQL {DATABASE}, Milvus at {MILVUS_ADDRESS}, 2 workers)")


if __name__ == "__main__":
    main()
