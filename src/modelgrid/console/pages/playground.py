"""Playground: chat with any model the signed-in key may use, the answer streamed into the
page, with a system prompt, temperature and max tokens, and the equivalent ``openai`` SDK
code for the current settings.

The page never holds an API key: its script POSTs the conversation (JSON, with the session's
CSRF token in ``X-CSRF-Token``) to ``/console/playground/chat``, which calls the serving
layer (``ChatService``, as ``/v1/chat/completions`` does) with the session's principal and
answers with the same OpenAI SSE stream; the script reads it with ``fetch`` and a
``ReadableStream``. The call is metered as any request is: one usage row, attributed to the
signed-in key and its workspace, under its limits and residency.

An operator signs in with an admin key, which the model API refuses (403): here its calls
run as that admin key and are billed to the admin key's own workspace (the page says which),
never to a tenant's.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from modelgrid.api.deps import call_context
from modelgrid.api.errors import error_response
from modelgrid.api.openai_sse import error_event, openai_events
from modelgrid.api.sse import SSEResponse
from modelgrid.console.access import EVERYONE, Viewer
from modelgrid.console.deps import PostDep, StateDep, ViewerDep, page_router
from modelgrid.console.templating import render
from modelgrid.core.errors import InvalidRequestError, ModelgridError
from modelgrid.protocol.openai.errors import errors_message
from modelgrid.protocol.openai.models import ChatCompletionRequest

router = page_router(EVERYONE, prefix="/playground")
MAX_BODY_BYTES = 256_000


def usable_models(state: Any, viewer: Viewer) -> list[str]:
    """The chat models served here that the viewer's key may use, sorted."""
    cards = state.app.models.cards()
    return sorted(
        c.model_id
        for c in cards
        if "chat" in c.capabilities and viewer.principal.may_use_model(c.model_id)
    )


def sdk_code(
    origin: str, model: str, system: str, temperature: float | None, max_tokens: int | None
) -> str:
    """The ``openai`` SDK (Python) call equivalent to the playground's settings, reading the
    key from ``MODELGRID_API_KEY`` (never a key in the page)."""
    messages: list[dict[str, str]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": "Hello!"})
    lines = [
        "import os",
        "",
        "from openai import OpenAI",
        "",
        f"client = OpenAI(base_url={json.dumps(origin + '/v1')}, "
        'api_key=os.environ["MODELGRID_API_KEY"])',
        "stream = client.chat.completions.create(",
        f"    model={json.dumps(model)},",
        "    messages=[",
        *(
            f'        {{"role": {json.dumps(m["role"])}, '
            f'"content": {json.dumps(m["content"], ensure_ascii=False)}}},'
            for m in messages
        ),
        "    ],",
    ]
    if temperature is not None:
        lines.append(f"    temperature={temperature!r},")
    if max_tokens is not None:
        lines.append(f"    max_tokens={max_tokens},")
    lines += [
        "    stream=True,",
        ")",
        "for chunk in stream:",
        "    if chunk.choices:",
        '        print(chunk.choices[0].delta.content or "", end="", flush=True)',
    ]
    return "\n".join(lines)


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


@router.get("")
async def playground_page(request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    models = usable_models(state, viewer)
    model = models[0] if models else ""
    return render(
        request,
        "playground.html",
        viewer,
        page="playground",
        title="Playground",
        models=models,
        code=sdk_code(_origin(request), model, "", 0.7, 256),
    )


@router.get("/code")
async def playground_code(
    request: Request,
    viewer: ViewerDep,
    model: Annotated[str, Query(max_length=200)] = "",
    system: Annotated[str, Query(max_length=4000)] = "",
    temperature: Annotated[float | None, Query(ge=0, le=2)] = None,
    max_tokens: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> Response:
    """The SDK code for the form's settings (htmx swaps it in as they change)."""
    return render(
        request,
        "playground_code.html",
        viewer,
        code=sdk_code(_origin(request), model, system, temperature, max_tokens),
    )


def _body(raw: bytes) -> ChatCompletionRequest:
    """The chat request the page sent, always streamed with usage. Raises:
    InvalidRequestError."""
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequestError("The conversation is too long for the playground.")
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidRequestError("The body must be JSON.") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("The body must be a JSON object.")
    keep = ("model", "messages", "temperature", "max_tokens")
    fields = {k: data[k] for k in keep if data.get(k) is not None}
    fields |= {"stream": True, "stream_options": {"include_usage": True}}
    try:
        return ChatCompletionRequest.model_validate(fields)
    except ValidationError as exc:  # worded as the API words it (one message, one param)
        message, param = errors_message(exc.errors())
        raise InvalidRequestError(message, param=param) from None


@router.post("/chat")
async def playground_chat(request: Request, state: StateDep, viewer: PostDep) -> Response:
    """Stream a chat completion for the page (OpenAI's SSE chunks, then ``[DONE]``), as the
    signed-in key; errors before the stream are JSON ``{"error": {...}}`` with their status."""
    try:
        body = _body(await request.body())
        chat = state.app.chat
        gen = await chat.open(viewer.principal, body, await call_context(request))
    except ModelgridError as exc:
        return error_response(exc)
    return SSEResponse(openai_events(chat.chunks(gen, True)), cut=error_event)


__all__ = ["router", "sdk_code", "usable_models"]
