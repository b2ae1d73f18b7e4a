"""Member-name rules."""

from __future__ import annotations

import pytest

from amber.adapters.tar.names import bad_target, normalize_name, shown, split_name, symlink_escape


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("/etc/passwd", "absolute"),
        ("a/../../b", "'..'"),
        ("a\0b", "NUL"),
        ("a" * 4097, "4097 bytes"),
        ("d/" + "x" * 256, "256 bytes"),
    ],
)
def test_refused_names_say_why(name: str, why: str) -> None:
    result = normalize_name(name)
    assert isinstance(result, str) and why in result


def test_normalised_and_keys() -> None:
    assert normalize_name("./a//b/.") == ("a", "b")
    assert normalize_name("./") == ()
    assert split_name("d/" + "x" * 300) == ("d", "x" * 300)  # a key: components not limited
    with pytest.raises(ValueError, match="hard link target"):
        split_name("/x", what="hard link target")


def test_shown_is_short_and_quoted() -> None:
    assert shown("a\nb") == "'a\\nb'"
    long = shown("n" * 10_000)
    assert len(long) < 220 and "..." in long


def test_symlink_rules() -> None:
    assert symlink_escape(("a", "l"), "../b", rooted=False) is None
    assert symlink_escape(("l",), "../x", rooted=False) is not None
    assert symlink_escape(("a", "l"), "b/../../x", rooted=False) is not None
    assert symlink_escape(("l",), "/etc", rooted=True) is None
    assert symlink_escape(("l",), "/etc", rooted=False) is not None
    assert bad_target("") is not None and bad_target("x" * 5000) is not None and bad_target("/any") is None
