"""podman's `--format`: `json`, `table ...`, and simple Go-template paths, evaluated safely.

Supported: literal text with `{{.A.B.C}}` paths into nested maps (a map's key or a record's
field), `{{.}}`, `{{json .A}}`, `{{index .A "key"}}` (also `{{(index .A "key").B}}`),
`{{upper .A}}`, `{{lower .A}}`, `{{len .A}}`, and the escapes `\\t` and `\\n` as podman takes
them. Nothing is executed: anything else is refused with a UsageError naming it.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from amber.errors import UsageError

_ACTION = re.compile(r"{{-?\s*(.*?)\s*-?}}", re.S)
_PATH = re.compile(r"^\.(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)?$")
_INDEX_PAREN = re.compile(r"^\((index\s+.+?)\)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)$")
NO_VALUE = "<no value>"


def _hint() -> str:
    return "use json, or paths such as '{{.Name}}' or '{{.State.Status}}', json, index, upper, lower, len"


def _unsupported(text: str) -> UsageError:
    return UsageError(f"unsupported format template: {text!r}", hint=_hint())


def go_text(value: Any) -> str:
    """A value as Go's text/template prints it: true/false, [a b], map[k:v], <no value>."""
    if value is None:
        return NO_VALUE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_text(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_text(v) for v in value) + "]"
    return str(value)


def _walk(value: Any, fields: Sequence[str]) -> Any:
    for name in fields:
        if isinstance(value, Mapping) and name in value:
            value = value[name]
        elif isinstance(value, Mapping):
            return None
        else:
            raise UsageError(
                f"format template: can't evaluate field {name} in {type(value).__name__}",
                hint="the field names are those `--format json` prints",
            )
    return value


def _path(expr: str, data: Any) -> Any:
    if not _PATH.match(expr):
        raise _unsupported("{{" + expr + "}}")
    return _walk(data, [f for f in expr[1:].split(".") if f])


def _index(args: str, data: Any) -> Any:
    try:
        words = shlex.split(args)
    except ValueError as exc:
        raise _unsupported("{{index " + args + "}}") from exc
    if len(words) < 2:
        raise _unsupported("{{index " + args + "}}")
    value = _path(words[0], data)
    for key in words[1:]:
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


_FUNCS: dict[str, Callable[[Any], Any]] = {
    "json": lambda v: json.dumps(v),
    "upper": lambda v: go_text(v).upper(),
    "lower": lambda v: go_text(v).lower(),
    "len": lambda v: len(v) if isinstance(v, Mapping | list | str) else 0,
}


def _evaluate(expr: str, data: Any) -> Any:
    expr = expr.strip()
    paren = _INDEX_PAREN.match(expr)
    if paren:
        inner = _index(paren.group(1)[len("index") :].strip(), data)
        return _walk(inner, [f for f in paren.group(2).split(".") if f]) if paren.group(2) else inner
    if expr.startswith("."):
        if "|" in expr:  # {{.A | json}}
            left, _, func = expr.partition("|")
            return _apply(func.strip(), _evaluate(left, data), expr)
        return _path(expr, data)
    name, _, rest = expr.partition(" ")
    if name == "index":
        return _index(rest, data)
    return _apply(name, _evaluate(rest, data) if rest.strip() else None, expr)


def _apply(name: str, value: Any, expr: str) -> Any:
    func = _FUNCS.get(name)
    if func is None:
        raise _unsupported("{{" + expr + "}}")
    return func(value)


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and actions, in order."""

    source: str
    parts: tuple[tuple[bool, str], ...]  # (is_action, text)

    @classmethod
    def parse(cls, source: str) -> Template:
        """Raises UsageError for an unbalanced `{{` or an unsupported action (at render)."""
        text = source.replace("\\t", "\t").replace("\\n", "\n")
        parts: list[tuple[bool, str]] = []
        pos = 0
        for m in _ACTION.finditer(text):
            parts.append((False, text[pos : m.start()]))
            parts.append((True, m.group(1)))
            pos = m.end()
        tail = text[pos:]
        if "{{" in tail or "}}" in tail:
            raise _unsupported(source)
        parts.append((False, tail))
        return cls(source, tuple(p for p in parts if p[0] or p[1]))

    def render(self, data: Any) -> str:
        """Raises UsageError for an action it does not support or a field of a scalar."""
        return "".join(go_text(_evaluate(t, data)) if action else t for action, t in self.parts)

    def fields(self) -> list[str]:
        """The last field name of each action (a table's headers)."""
        out = []
        for action, t in self.parts:
            if action:
                words = [w for w in re.split(r"[\s.()|]+", t) if w and w not in _FUNCS and w != "index"]
                out.append(words[-1].strip('"') if words else "")
        return out


def render_all(fmt: str, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """podman's --format for a list: `json` (one JSON array), `table TEMPLATE` (a header of the
    field names, upper-cased, then one row each), or a template per record. Raises UsageError."""
    if fmt.strip() == "json":
        return [json.dumps(list(records), indent=4)]
    if fmt.startswith("table"):
        tpl = Template.parse(fmt[len("table") :].lstrip())
        header = tpl.source and _table_header(tpl)
        return [header, *(tpl.render(r) for r in records)] if header else [tpl.render(r) for r in records]
    tpl = Template.parse(fmt)
    return [tpl.render(r) for r in records]


def _table_header(tpl: Template) -> str:
    names = iter(_split_camel(f).upper() for f in tpl.fields())
    return "".join(next(names) if action else t for action, t in tpl.parts)


def _split_camel(name: str) -> str:
    return {"ID": "CONTAINER ID", "Names": "NAMES", "Id": "ID"}.get(name) or re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)
