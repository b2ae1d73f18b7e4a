"""podman's --format templates (cli/format.py), ps filters and the podman views (engine/podman_view.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amber.adapters.netavark import PortMapping
from amber.cli.format import Template, go_text, render_all
from amber.engine.podman_view import inspect_view, is_checkpointed, matches, parse_filters, ps_template_view, ps_view
from amber.errors import UsageError
from amber.layout import ContainerLayout
from amber.models import Container, Status

DATA = {
    "Name": "web",
    "State": {"Status": "exited", "Running": False, "Checkpointed": True, "Pid": 0},
    "Config": {"Labels": {"app": "x", "tier": "db"}, "Cmd": ["sh", "-c", "top"]},
}


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("{{.Name}}", "web"),
        ("{{.State.Checkpointed}}", "true"),
        ("{{ .State.Pid }}", "0"),
        ("{{.State.Status}}:{{.State.Running}}:{{.State.Checkpointed}}", "exited:false:true"),
        ("name={{.Name}}\\t{{.State.Status}}", "name=web\texited"),
        ("{{.Config.Labels}}", "map[app:x tier:db]"),
        ("{{.Config.Cmd}}", "[sh -c top]"),
        ('{{index .Config.Labels "tier"}}', "db"),
        ('{{(index .Config.Labels "app")}}', "x"),
        ("{{json .Config.Cmd}}", '["sh", "-c", "top"]'),
        ("{{.Config.Cmd | json}}", '["sh", "-c", "top"]'),
        ("{{upper .Name}}", "WEB"),
        ("{{len .Config.Labels}}", "2"),
        ("{{.Missing}}", "<no value>"),
        ("plain text", "plain text"),
    ],
)
def test_template_paths(fmt: str, expected: str) -> None:
    assert Template.parse(fmt).render(DATA) == expected


@pytest.mark.parametrize(
    "fmt",
    ["{{range .Config.Cmd}}x{{end}}", "{{call .Name}}", "{{.Name", '{{printf "%s" .Name}}', "{{.Name.Inner}}"],
)
def test_unsupported_templates_are_refused(fmt: str) -> None:
    with pytest.raises(UsageError):
        Template.parse(fmt).render(DATA)


def test_go_text() -> None:
    assert go_text(None) == "<no value>"
    assert go_text(True) == "true"
    assert go_text({"b": 1, "a": [1, 2]}) == "map[a:[1 2] b:1]"


def test_render_all_json_table_and_template() -> None:
    records = [{"ID": "abc", "Names": "one"}, {"ID": "def", "Names": "two"}]
    assert json.loads(render_all("json", records)[0]) == records
    assert render_all("{{.Names}}", records) == ["one", "two"]
    lines = render_all("table {{.ID}}\\t{{.Names}}", records)
    assert lines == ["CONTAINER ID\tNAMES", "abc\tone", "def\ttwo"]


def _container(**kw: object) -> Container:
    base: dict[str, object] = {
        "id": "a" * 64,
        "name": "web",
        "image_id": "f" * 64,
        "image_name": "localhost/demo:latest",
        "runtime": "crun",
        "runtime_path": "/usr/bin/crun",
        "command": ["sleep", "100"],
        "created": "2026-01-01T00:00:00.000000Z",
    }
    base.update(kw)
    return Container(**base)  # type: ignore[arg-type]


def test_filters() -> None:
    c = _container(status=Status.RUNNING)
    assert matches(c, parse_filters(["name=we"]))
    assert matches(c, parse_filters(["name=nope", "name=web"]))  # one key: OR
    assert not matches(c, parse_filters(["name=web", "status=exited"]))  # keys: AND
    assert matches(c, parse_filters(["id=aaaa", "ancestor=localhost/demo", "status=running"]))
    assert matches(c, parse_filters(["ancestor=ffff"]))
    assert not matches(c, parse_filters(["label=app"]))
    assert matches(_container(status=Status.CHECKPOINTED), parse_filters(["status=exited"]))
    with pytest.raises(UsageError):
        parse_filters(["colour=red"])
    with pytest.raises(UsageError):
        parse_filters(["name"])


def test_checkpointed_and_restored_states(tmp_path: Path) -> None:
    cp = _container(status=Status.CHECKPOINTED, checkpointed="2026-01-01T00:01:00.000000Z")
    assert is_checkpointed(cp)
    left = _container(status=Status.RUNNING, started="2026-01-01T00:00:30Z", checkpointed="2026-01-01T00:01:00Z")
    assert is_checkpointed(left)  # checkpoint -R
    back = _container(status=Status.RUNNING, started="2026-01-01T00:02:00Z", checkpointed="2026-01-01T00:01:00Z")
    assert not is_checkpointed(back)
    paths = ContainerLayout(dir=Path("/x"), netns=Path("/n"), exit_file=Path("/e"))
    view = inspect_view(_container(status=Status.CHECKPOINTED, restored=True), paths, {"process": {"cwd": "/w"}})
    assert view["State"]["Status"] == "exited"
    assert view["State"]["Restored"] is False
    assert view["Config"]["WorkingDir"] == "/w"
    assert view["Name"] == "web" and view["Id"] == "a" * 64


def test_ps_template_view_truncates_ids() -> None:
    c = _container(status=Status.RUNNING, started="2026-01-01T00:00:00Z")
    assert ps_template_view(c)["ID"] == "a" * 12
    assert ps_template_view(c, no_trunc=True)["ID"] == "a" * 64
    assert ps_template_view(c)["Status"].startswith("Up ")


def test_ps_views_show_published_ports_as_podman_does() -> None:
    c = _container(status=Status.RUNNING, started="2026-01-01T00:00:00Z")
    ports = [PortMapping.from_string("8080:80"), PortMapping.from_string("127.0.0.1:5353:53/udp")]
    assert ps_template_view(c, ports=ports)["Ports"] == "0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp"
    assert ps_template_view(c)["Ports"] == ""
    assert ps_view(c, ports)["Ports"] == [
        {"host_ip": "", "container_port": 80, "host_port": 8080, "range": 1, "protocol": "tcp"},
        {"host_ip": "127.0.0.1", "container_port": 53, "host_port": 5353, "range": 1, "protocol": "udp"},
    ]
    assert render_all("{{.Names}} {{.Ports}}", [ps_template_view(c, ports=ports[:1])]) == ["web 0.0.0.0:8080->80/tcp"]
