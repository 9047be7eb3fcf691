"""vLLM's tokenizer routes: ``POST /tokenize`` and ``POST /detokenize``
(``protocol.openai.tokenize``), for every served generation model.

Mounted by the gateway and by the engine worker alike (over ``api.state.ModelApi``): a
gateway's ``ProcessEngine`` and ``UpstreamEngine`` reach a worker's own ``/tokenize``, which
tokenizes with the model's tokenizer and chat template. Authenticated like the model API
(a tenant key; a worker's token), scope-checked, not billed (``serving.tokenize``); errors in
OpenAI's shape.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from modelgrid.api.body import json_body
from modelgrid.api.deps import ModelCallDep
from modelgrid.protocol.openai.tokenize import (
    DetokenizeRequest,
    TokenizeRequest,
    to_tokenize_input,
    tokenize_response,
)
from modelgrid.serving.tokenize import TokenizeService

router = APIRouter()


@router.post("/tokenize")
async def tokenize(request: Request, call: ModelCallDep) -> JSONResponse:
    body = await json_body(request, TokenizeRequest)
    inference, options = to_tokenize_input(body, call.ctx.request_id)
    service = TokenizeService(call.state.models)
    tokens = await service.tokenize(call.principal, inference, call.ctx, options)
    return JSONResponse(tokenize_response(tokens.ids, tokens.max_model_len))


@router.post("/detokenize")
async def detokenize(request: Request, call: ModelCallDep) -> JSONResponse:
    body = await json_body(request, DetokenizeRequest)
    service = TokenizeService(call.state.models)
    text = await service.detokenize(call.principal, body.model, body.tokens, call.ctx)
    return JSONResponse({"prompt": text})


__all__ = ["router"]
