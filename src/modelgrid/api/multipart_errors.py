"""Why a multipart body was refused, in words a client can act on.

Starlette turns every error of python-multipart's parser into a 400 whose detail is the bare
"Invalid multipart data." (``starlette.formparsers.MultiPartParser.parse``: the
``MultiPartException`` it raises, caught by ``Request.form`` into an ``HTTPException``, keeps
the parser's error as its ``__cause__``). The commonest cause is a part's header line over
python-multipart's ``DEFAULT_MAX_HEADER_SIZE`` (4,224 bytes; Starlette passes no other):
a file name that long in ``Content-Disposition``; that one is named here, with ``param``
``file`` (every upload route's file part). Other parser errors keep their own text.
"""

from __future__ import annotations

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import DEFAULT_MAX_HEADER_SIZE
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from modelgrid.core.errors import InvalidRequestError

CODE = "invalid_multipart"


def multipart_error(exc: HTTPException) -> InvalidRequestError | None:
    """The error to answer for ``exc`` when it is Starlette's 400 for a multipart body the
    parser refused (``code`` ``invalid_multipart``); ``None`` for any other exception."""
    refused = exc.__context__
    if not isinstance(refused, MultiPartException):
        return None
    cause = refused.__cause__
    if isinstance(cause, MultipartParseError) and "header size" in str(cause):
        return InvalidRequestError(
            f"A part of the multipart body has a header line over {DEFAULT_MAX_HEADER_SIZE} "
            "bytes: most often the file's name is too long; send a shorter one.",
            param="file",
            code=CODE,
        )
    if cause is not None and refused.message == "Invalid multipart data.":
        return InvalidRequestError(f"Invalid multipart data: {cause}.", code=CODE)
    return InvalidRequestError(refused.message, code=CODE)


__all__ = ["CODE", "multipart_error"]
