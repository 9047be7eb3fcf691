"""A multipart upload the parser refuses says why, naming ``file`` (a 400, never the bare
"Invalid multipart data." nor a 500), over a real uvicorn server."""

from __future__ import annotations

import httpx
import pytest

from modelgrid.engines.fake import FakeEngine
from tests.conftest import ServerFactory
from tests.knowledge.hash_embedding import HashEmbeddingEngine
from tests.support import ThreadServer

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# python-multipart's default limit on one header line of a part (DEFAULT_MAX_HEADER_SIZE)
HEADER_BYTES_MAX = 4096 + 128


@pytest.fixture
def server(server_factory: ServerFactory) -> ThreadServer:
    return server_factory(FakeEngine(), HashEmbeddingEngine(), knowledge={"poll_interval_s": 0.05})


@SQLITE
def test_a_file_name_too_long_for_a_part_header_is_a_400_naming_file(
    server: ThreadServer,
) -> None:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    kb = httpx.post(
        f"{server.base_url}/v1/knowledge_bases", headers=headers, json={"name": "kb"}
    ).json()["id"]
    files = {"file": ("a" * 5000 + ".txt", b"Parcels arrive within three days.")}
    for path, data in [
        ("/v1/files", {"purpose": "assistants"}),
        (f"/v1/knowledge_bases/{kb}/documents", {}),
    ]:
        r = httpx.post(f"{server.base_url}{path}", headers=headers, files=files, data=data)
        assert (r.status_code, r.json()["error"]) == (
            400,
            {
                "message": "A part of the multipart body has a header line over "
                f"{HEADER_BYTES_MAX} bytes: most often the file's name is too long; send "
                "a shorter one.",
                "type": "invalid_request_error",
                "param": "file",
                "code": "invalid_multipart",
            },
        ), path


@SQLITE
def test_other_refused_multipart_bodies_say_why(server: ThreadServer) -> None:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    part_headers = "".join(f"X-H{i}: v\r\n" for i in range(9))  # python-multipart allows 8
    body = (
        f'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        f"{part_headers}\r\nhello\r\n--b--\r\n"
    ).encode()
    for content_type, content, message in [
        ("multipart/form-data", b"x", "Missing boundary in multipart."),
        (
            "multipart/form-data; boundary=b",
            body,
            "Invalid multipart data: Maximum header count exceeded.",
        ),
    ]:
        r = httpx.post(
            f"{server.base_url}/v1/files",
            headers={**headers, "Content-Type": content_type},
            content=content,
        )
        assert (r.status_code, r.json()["error"]["message"], r.json()["error"]["code"]) == (
            400,
            message,
            "invalid_multipart",
        )
