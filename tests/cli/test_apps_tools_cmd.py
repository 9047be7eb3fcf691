"""``modelgrid apps create/set --tools-file``: an app's plugins from a JSON file, checked as the
API checks them (a bad one exits 2 naming the field), header values masked in the output and
absent from the audit log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_admin_cli import cli
from tests.support import db_rows, write_topology

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
TOOL = {
    "name": "weather",
    "description": "The weather in a city now.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "url": "https://api.example.com/weather",
    "headers": {"X-Api-Key": "cli-secret-1"},
}


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELGRID_DATA_DIR", str(tmp_path))
    return tmp_path


@SQLITE
def test_tools_file(database_url: str, tmp_path: Path) -> None:
    url = database_url
    write_topology(tmp_path / "topology.toml", {"eu": "DE"}, ["m1"], gateway="eu")
    cli(url, "workspaces", "create", "acme", "--regions", "eu")
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([TOOL]))
    made = json.loads(
        cli(
            url, "apps", "create", "bot", "--workspace", "acme", "--model", "m1",
            "--tools-file", str(tools), "--tool-choice", "required", "--json",
        ).stdout
    )  # fmt: skip
    assert [(t["name"], t["headers"], t["method"]) for t in made["tools"]] == [
        ("weather", {"X-Api-Key": "****"}, "POST")
    ]
    assert (made["tool_choice"], made["max_tool_rounds"]) == ("required", 4)
    shown = cli(url, "apps", "show", made["id"], "--workspace", "acme").stdout.decode()
    assert "tools weather (required, 4 rounds)" in " ".join(shown.split())  # Rich may wrap
    # set: the file replaces the whole list
    tools.write_text(json.dumps([{**TOOL, "name": "forecast", "method": "GET"}]))
    changed = json.loads(
        cli(
            url, "apps", "set", made["id"], "--workspace", "acme", "--tools-file", str(tools),
            "--max-tool-rounds", "2", "--json",
        ).stdout
    )  # fmt: skip
    assert [(t["name"], t["method"]) for t in changed["tools"]] == [("forecast", "GET")]
    assert changed["max_tool_rounds"] == 2
    audit = json.dumps(db_rows(url, "SELECT details FROM audit_log"), default=str)
    assert "cli-secret-1" not in audit
    # bad definitions exit 2 naming the field; an unreadable file too
    tools.write_text(json.dumps([{**TOOL, "url": "http://169.254.169.254/"}]))
    bad = cli(
        url, "apps", "set", made["id"], "--workspace", "acme", "--tools-file", str(tools),
        ok=False,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "tools[0].url" in (bad.stderr + bad.stdout).decode()
    # a shape error (pydantic's) names the field as the API does too, not 'tools.0.url'
    tools.write_text(json.dumps([{**TOOL, "url": "ftp://example.com/x"}]))
    bad = cli(
        url, "apps", "set", made["id"], "--workspace", "acme", "--tools-file", str(tools),
        ok=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "invalid tools[0].url: the URL's scheme must be http or https" in " ".join(
        bad.stderr.decode().split()
    )
    tools.write_text("[1]")  # not a tool object: said so, not pydantic's class name
    bad = cli(
        url, "apps", "set", made["id"], "--workspace", "acme", "--tools-file", str(tools),
        ok=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert f"the tools file {tools}: tools[0] must be a JSON object (a tool), not 1" in "".join(
        bad.stderr.decode().split("\n")
    )
    tools.write_text("{not json")
    bad = cli(
        url, "apps", "set", made["id"], "--workspace", "acme", "--tools-file", str(tools),
        ok=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "cannot read the tools file" in bad.stderr.decode()
    # a path that reads as Rich markup is printed as it is (it was a MarkupError traceback)
    odd = tmp_path / "[" / "x]"  # the path holds '[/x]', a closing tag with no opening one
    odd.mkdir(parents=True)
    (odd / "t.json").write_text("{not json")
    bad = cli(
        url, "apps", "set", made["id"], "--workspace", "acme", "--tools-file",
        str(odd / "t.json"), ok=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert f"cannot read the tools file {odd / 't.json'}" in "".join(
        bad.stderr.decode().split("\n")
    )
