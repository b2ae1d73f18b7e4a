"""Size limits: the max_unpacked_size setting, what a manifest declares, sparse files measured."""

from __future__ import annotations

from pathlib import Path

import pytest

from amber.adapters import podman_format as fmt
from amber.adapters import rootfs_diff
from amber.adapters.state import remove_tree
from amber.config import DEFAULT_MAX_UNPACKED, Settings, parse_size
from amber.engine import scratch
from amber.errors import UsageError


def test_parse_size() -> None:
    assert parse_size(4096, "x") == 4096
    assert parse_size("512M", "x") == 512 << 20
    assert parse_size("32GiB", "x") == 32 << 30
    assert parse_size("1.5g", "x") == 3 << 29
    for bad in ("", "lots", "-1", "0", True, "1Q"):
        with pytest.raises(UsageError, match="not a size") as exc:
            parse_size(bad, "where")
        assert exc.value.hint


def test_max_unpacked_size_setting(tmp_path: Path) -> None:
    assert Settings.load(config_file=str(tmp_path / "none.toml")).max_unpacked_size == DEFAULT_MAX_UNPACKED
    config = tmp_path / "amber.toml"
    config.write_text('[engine]\nmax_unpacked_size = "2G"\n')
    assert Settings.load(config_file=str(config)).max_unpacked_size == 2 << 30


def test_declared_size() -> None:
    assert scratch.declared_size(None) == 0
    sizes = fmt.ManifestSizes(checkpoint=10, memory_pages=5, rootfs_diff=20, extra={fmt.OTHER_SIZE: 7})
    manifest = fmt.AmberManifest(1, "x", "y", "cnt", "crun", sizes)
    assert scratch.declared_size(manifest) == 37
    lying = fmt.ManifestSizes(checkpoint=10, rootfs_diff=20, extra={fmt.OTHER_SIZE: "lots"})
    assert scratch.declared_size(fmt.AmberManifest(1, "x", "y", "cnt", "crun", lying)) == 30


def test_measure_upper_counts_sparse_files_at_any_depth(tmp_path: Path) -> None:
    deep = tmp_path / "tree"
    deep.mkdir()
    for _ in range(1100):  # os.makedirs itself recurses
        deep = deep / "d"
        deep.mkdir()
    with open(deep / "sparse", "wb") as f:
        f.truncate(1 << 30)
    (tmp_path / "dense").write_bytes(b"x" * 10000)
    size = rootfs_diff.measure_upper(tmp_path)
    assert size.apparent == (1 << 30) + 10000  # what a restore unpacks, holes included
    assert size.stored == 10000  # what the diff holds: the sparse file's holes are left out
    remove_tree(tmp_path / "tree")  # pytest's own clean-up recurses too
    assert not (tmp_path / "tree").exists()
