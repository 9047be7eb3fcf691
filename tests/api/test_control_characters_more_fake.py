"""Control characters (``protocol.text``) refused where names still took them: the topology
API's region names and model names, uploaded files' names (``/v1/files`` and knowledge-base
documents) and documents' metadata. Each is a 400 naming the field, with the message every
other name gives, and nothing is stored."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import ValidationError

from modelgrid.protocol.topology import TopologyFile
from tests.api import test_control_characters_fake as plain
from tests.support import ThreadServer, create_key, db_rows

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# ESC (a terminal escape), DEL, NEL (C1). httpx percent-encodes the other C0 controls in a
# multipart file name (HTML5 form encoding), so these are the ones a file name can carry.
BAD = ["x\u001b[2Jy", "x\u007fy", "x\u0085y"]


server = plain.server  # the same gateway fixture and client call as the first file's
call = plain.call


def message(bad: str) -> str:
    return f"must not contain control characters (U+{ord(bad[1]):04X} at character 2)"


def refused(r: httpx.Response, param: str, bad: str) -> None:
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["param"], err["type"]) == (param, "invalid_request_error"), err
    assert message(bad) in err["message"], err


@SQLITE
def test_topology_names_refuse_control_characters(server: ThreadServer) -> None:
    admin = create_key(server.settings.database_url, role="admin", workspace="admin").plaintext
    replica = {"id": "r1", "base_url": "http://127.0.0.1:9/v1"}
    for bad in [*BAD, "x\u0000y", "x\ty"]:
        r = call(server, "POST", "/admin/v1/regions", admin, json={"id": "eu-1", "name": bad})
        refused(r, "name", bad)
        r = call(server, "PATCH", "/admin/v1/regions/local", admin, json={"name": bad})
        refused(r, "name", bad)
        body = {"model": bad, "region": "local", "replicas": [replica]}
        refused(call(server, "POST", "/admin/v1/deployments", admin, json=body), "model", bad)
        body = {"model": "m", "region": "local", "replicas": [{**replica, "upstream_model": bad}]}
        r = call(server, "POST", "/admin/v1/deployments", admin, json=body)
        refused(r, "replicas[0].upstream_model", bad)
    regions = call(server, "GET", "/admin/v1/regions", admin).json()["data"]
    assert [x["id"] for x in regions] == ["local"]
    deployments = call(server, "GET", "/admin/v1/deployments", admin).json()["data"]
    assert {d["model"] for d in deployments}.isdisjoint({"m", *BAD})
    # a region name may be any other text
    r = call(server, "POST", "/admin/v1/regions", admin, json={"id": "eu-1", "name": "Zürich ☃"})
    assert (r.status_code, r.json()["name"]) == (200, "Zürich ☃")


def test_topology_file_refuses_control_characters() -> None:
    with pytest.raises(ValidationError) as e:
        TopologyFile.model_validate({"regions": [{"id": "eu-1", "name": "a\u009bb"}]})
    [err] = e.value.errors()
    assert err["loc"] == ("regions", 0, "name")
    assert message("a\u009bb") in err["msg"]


@SQLITE
def test_uploaded_file_names_refuse_control_characters(server: ThreadServer) -> None:
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}
    line["body"] = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    kb = call(server, "POST", "/v1/knowledge_bases", json={"name": "kb"}).json()["id"]
    for bad in BAD:
        files = {"file": (f"{bad}.jsonl", json.dumps(line).encode() + b"\n")}
        r = call(server, "POST", "/v1/files", files=files, data={"purpose": "batch"})
        assert r.status_code == 400, r.text
        assert r.json() == {
            "error": {
                "message": f"The file's name {message(bad)}.",
                "type": "invalid_request_error",
                "param": "file",
                "code": "invalid_request",
            }
        }
        files = {"file": (f"{bad}.md", b"# Refunds\n\nRefunds take 14 days.\n")}
        r = call(server, "POST", f"/v1/knowledge_bases/{kb}/documents", files=files)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == {
            "message": f"The file name {message(bad)}.",
            "type": "invalid_request_error",
            "param": "file",
            "code": "invalid_request",
        }
    assert call(server, "GET", "/v1/files").json()["data"] == []
    assert db_rows(server, "SELECT count(*) AS n FROM knowledge_documents")[0]["n"] == 0
    ok = {"file": ("Zürich notes.md", b"# Refunds\n\nRefunds take 14 days.\n")}
    r = call(server, "POST", f"/v1/knowledge_bases/{kb}/documents", files=ok)
    assert (r.status_code, r.json()["filename"]) == (200, "Zürich notes.md")


@SQLITE
def test_document_metadata_refuses_control_characters(server: ThreadServer) -> None:
    kb = call(server, "POST", "/v1/knowledge_bases", json={"name": "kb"}).json()["id"]
    doc = {"file": ("guide.md", b"# Refunds\n\nRefunds take 14 days.\n")}
    path = f"/v1/knowledge_bases/{kb}/documents"
    for bad in [*BAD, "x\u0000y"]:
        form = {"metadata": json.dumps({"team": bad})}
        r = call(server, "POST", path, files=doc, data=form)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "metadata.team"
        assert r.json()["error"]["message"] == f"'metadata.team' {message(bad)}."
        form = {"metadata": json.dumps({bad: 1})}
        r = call(server, "POST", path, files=doc, data=form)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "metadata"
        assert r.json()["error"]["message"] == f"'metadata' keys {message(bad)}."
    assert db_rows(server, "SELECT count(*) AS n FROM knowledge_documents")[0]["n"] == 0
    # a value is prose: it may hold tabs and line breaks, a key may not
    prose = "Line one,\r\n\tline two."
    r = call(server, "POST", path, files=doc, data={"metadata": json.dumps({"note": prose})})
    assert (r.status_code, r.json()["metadata"]) == (200, {"note": prose})
    tab = "a\tb"
    r = call(server, "POST", path, files=doc, data={"metadata": json.dumps({tab: 1})})
    assert r.json()["error"]["message"] == f"'metadata' keys {message(tab)}."
