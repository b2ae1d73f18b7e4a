"""`container diff` against image layers: added vs changed, and what layers above hide."""

from __future__ import annotations

from pathlib import Path

from amber.engine.diff import Change, changes


def _tree(root: Path, files: list[str]) -> Path:
    for f in files:
        path = root / f
        if f.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f)
    return root


def test_added_and_changed_against_the_layers(tmp_path: Path) -> None:
    base = _tree(tmp_path / "base", ["etc/motd", "etc/old", "usr/bin/x"])
    top = _tree(tmp_path / "top", ["etc/.wh.old", "opt/"])  # the top layer deleted /etc/old
    upper = _tree(tmp_path / "upper", ["etc/motd", "etc/old", "opt/new", "srv/a/b"])
    got = [str(c) for c in changes(upper, [top, base])]
    assert got == ["C /etc", "C /etc/motd", "A /etc/old", "C /opt", "A /opt/new", "A /srv", "A /srv/a", "A /srv/a/b"]
    assert changes(tmp_path / "missing", [base]) == []
    assert str(Change("/x", "D")) == "D /x"


def test_a_directory_only_copied_up_is_no_change(tmp_path: Path) -> None:
    """podman's rule: a copied-up directory is changed when its mode or owner changed or something
    below it did, never for its mtime (CRIU's restore makes and removes a file in /tmp)."""
    base = _tree(tmp_path / "base", ["tmp/", "etc/motd", "var/"])
    upper = _tree(tmp_path / "upper", ["tmp/", "etc/", "var/"])
    (upper / "var").chmod(0o700)
    (base / "var").chmod(0o755)
    assert [str(c) for c in changes(upper, [base])] == ["C /var"]
    (upper / "tmp" / "new").write_text("x")
    assert [str(c) for c in changes(upper, [base])] == ["C /tmp", "A /tmp/new", "C /var"]
