"""Feast's DuckDB offline store shares one process-wide connection: a second workdir's snapshot build in the same
process must not fail once the first one has spilled (DuckDB cannot switch a used temp directory)."""
import subprocess
import sys

SCRIPT = """
from pathlib import Path
from types import SimpleNamespace
import ibis
from recplugin.features.store import bound_duckdb_offline_store

store = SimpleNamespace(config=SimpleNamespace(offline_store=SimpleNamespace(type="duckdb")))
config = lambda folder, limit: SimpleNamespace(data_dir=Path(folder), feast=SimpleNamespace(duckdb_memory_limit=limit))
bound_duckdb_offline_store(store, config(sys.argv[1], "30MB"))
backend = ibis.get_backend()
backend.raw_sql("SET enable_progress_bar = false; SET threads = 1; CREATE TEMP TABLE t AS SELECT range AS x, random() AS r FROM range(6000000) ORDER BY r")
assert any(Path(sys.argv[1], "spill").iterdir()), "the first build did not spill"
bound_duckdb_offline_store(store, config(sys.argv[2], "1GB"))
limit, spill = backend.raw_sql("SELECT current_setting('memory_limit'), current_setting('temp_directory')").fetchone()
print(limit + "|" + spill)
"""


def test_a_second_snapshot_build_in_one_process_keeps_the_used_spill_directory(tmp_path):
    first, second = tmp_path / "first" / "data", tmp_path / "second" / "data"
    done = subprocess.run([sys.executable, "-c", "import sys\n" + SCRIPT, str(first), str(second)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    limit, spill = done.stdout.strip().splitlines()[-1].split("|")
    assert limit.startswith("953") and spill == str(first / "spill")  # the new memory limit (1 GB), the used directory
