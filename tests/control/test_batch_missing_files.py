"""A batch's output or error file that does not exist (``modelgrid batches results``): a 404
with OpenAI's code for a missing file, naming the batch object's null field and saying why,
instead of a bare ``not_found``."""

from __future__ import annotations

import json

import pytest

from modelgrid.api.errors import error_response
from modelgrid.control.batches import _no_file
from modelgrid.storage.models import Batch


@pytest.mark.parametrize(
    ("status", "errors", "param", "why"),
    [
        (
            "in_progress",
            False,
            "output_file_id",
            "it is in_progress, and its files are written when it ends (output_file_id stays "
            "null until then)",
        ),
        (
            "finalizing",
            True,
            "error_file_id",
            "it is finalizing, and its files are written when it ends (error_file_id stays "
            "null until then)",
        ),
        ("completed", True, "error_file_id", "it is completed and none of its requests failed"),
        (
            "completed",
            False,
            "output_file_id",
            "it is completed and none of its requests succeeded",
        ),
        (
            "failed",
            False,
            "output_file_id",
            "it failed before running its requests (its 'errors' say why)",
        ),
    ],
)
def test_missing_file_is_a_specific_404(status: str, errors: bool, param: str, why: str) -> None:
    which = "error" if errors else "output"
    r = error_response(_no_file(Batch(id="batch_abc", status=status), errors=errors))
    assert r.status_code == 404
    assert json.loads(bytes(r.body)) == {
        "error": {
            "message": f"Batch batch_abc has no {which} file: {why}.",
            "type": "invalid_request_error",
            "param": param,
            "code": "file_not_found",
        }
    }
