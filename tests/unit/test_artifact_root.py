"""Artifacts load only from under the configured artifact root: `..`, absolute paths elsewhere and symlinks out are refused."""
import pytest

from recplugin.registry.models import UntrustedArtifact, confined_artifact


def test_paths_under_the_root_resolve(tmp_path):
    (tmp_path / "models" / "v1").mkdir(parents=True)
    assert confined_artifact(tmp_path / "models", str(tmp_path / "models" / "v1")) == (tmp_path / "models" / "v1").resolve()


@pytest.mark.parametrize("escape", ["../outside", "/etc", "link"])
def test_paths_that_escape_the_root_are_refused(tmp_path, escape):
    root = tmp_path / "models"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    uri = escape if escape.startswith("/") else str(root / escape)
    with pytest.raises(UntrustedArtifact, match="not under the artifact root"):
        confined_artifact(root, uri)
