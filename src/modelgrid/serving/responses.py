"""OpenAI's Responses API on top of ``Generation`` (https://platform.openai.com/docs/api-reference/responses).

A request is converted to the core request (``protocol.openai.responses``: the input items,
the earlier turns when it names ``previous_response_id``, ``instructions`` as the system
message, function tools, ``text.format`` enforced by grammar) and runs through the same
metered generation as a chat completion (``endpoint="responses"`` in the usage ledger). The
engine's deltas become output items (``_Assembler``): a ``message`` with one ``output_text``
part, and a ``function_call`` item per call, with ids made here, so the streamed and the
non-streamed answer have the same items and ids. A chained turn goes to the replica that
served the previous one (``RoutingHints.affinity_replica``): its prefix cache holds the
conversation, which is then billed as ``input_tokens_details.cached_tokens``.

The finished response is stored (``store``, default true; ``serving.response_store``)
before its last event or its body is sent, so a client can chain on it at once. A stream
the client leaves is not stored (its usage is recorded, as always).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from modelgrid.core.errors import (
    ContextLengthExceededError,
    ModelgridError,
    ServiceUnavailableError,
)
from modelgrid.core.types import (
    CallContext,
    ChatMessage,
    Delta,
    InferenceRequest,
    SamplingParams,
    TokenLogprob,
)
from modelgrid.protocol.openai import response_objects as wire
from modelgrid.protocol.openai.file_search_tool import (
    FileSearchTool,
    file_citation,
    file_search_tool,
    split_choice,
)
from modelgrid.protocol.openai.responses import (
    ResponseCreateRequest,
    check_request,
    conversation,
    item_id,
    normalize_input,
    text_format,
    tool_choice,
    tools_in,
)
from modelgrid.routing import placement_of
from modelgrid.serving.file_search import FileSearch
from modelgrid.serving.generation import Generation, GenerationService
from modelgrid.serving.meter import Meter
from modelgrid.serving.metered import routing_hints
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.models import ModelRegistry
from modelgrid.serving.response_store import NewResponse, ResponseStore
from modelgrid.serving.response_tools import FoundFiles, search_files
from modelgrid.tenancy.service import Principal

Event = tuple[str, dict[str, Any]]


class _Assembler:
    """Folds the deltas of one answer into output items, and says which stream events each
    step makes (``(type, fields)``, numbered by the caller)."""

    def __init__(self, logprobs: bool) -> None:
        self.items: list[dict[str, Any]] = []
        self._logprobs = logprobs
        self._msg: dict[str, Any] | None = None  # the open message item
        self._texts: list[str] = []
        self._lps: list[TokenLogprob] = []
        self._call: dict[str, Any] | None = None  # the open function_call item
        self._args: list[str] = []
        self._search: dict[str, Any] | None = None  # the file_search_call item, if any
        self.citations: list[tuple[str, str]] = []  # (file id, filename) the answer cites

    def searched(self, item: dict[str, Any], citations: list[tuple[str, str]]) -> None:
        """The file search ran before the answer: its item leads the output, and the
        answer's text cites ``citations``."""
        self._search = item
        self.items.append(item)
        self.citations = citations

    def opening(self) -> list[Event]:
        """The file search's events, in the reference's order (sent after
        ``response.in_progress``; the search itself ran before the first event)."""
        item = self._search
        if item is None:
            return []
        where = {"output_index": self.items.index(item), "item_id": item["id"]}
        return [
            (
                "response.output_item.added",
                {
                    "output_index": where["output_index"],
                    "item": dict(item, status="in_progress", results=None),
                },
            ),
            ("response.file_search_call.in_progress", where),
            ("response.file_search_call.searching", where),
            ("response.file_search_call.completed", where),
            ("response.output_item.done", {"output_index": where["output_index"], "item": item}),
        ]

    def feed(self, delta: Delta) -> list[Event]:
        out: list[Event] = []
        if delta.text:
            if self._msg is None:
                out += self._close_call()
                self._msg = wire.message_item(item_id("msg"), [], "in_progress")
                index = len(self.items)
                self.items.append(self._msg)
                out.append(
                    (
                        "response.output_item.added",
                        {"output_index": index, "item": dict(self._msg, content=[])},
                    )
                )
                out.append(
                    (
                        "response.content_part.added",
                        {**self._where(self._msg), "content_index": 0, "part": wire.text_part("")},
                    )
                )
            self._texts.append(delta.text)
            lps = list(delta.logprobs) if self._logprobs else []
            self._lps += lps
            out.append(
                (
                    "response.output_text.delta",
                    {
                        **self._where(self._msg),
                        "content_index": 0,
                        "delta": delta.text,
                        "logprobs": wire.logprobs_list(lps),
                    },
                )
            )
        for part in delta.tool_calls:
            if part.id is not None:
                out += self._close_message() + self._close_call()
                self._call = wire.function_call_item(
                    item_id("fc"), part.id, part.name or "", "", "in_progress"
                )
                index = len(self.items)
                self.items.append(self._call)
                out.append(
                    (
                        "response.output_item.added",
                        {"output_index": index, "item": dict(self._call)},
                    )
                )
            if part.arguments and self._call is not None:
                self._args.append(part.arguments)
                out.append(
                    (
                        "response.function_call_arguments.delta",
                        {**self._where(self._call), "delta": part.arguments},
                    )
                )
        return out

    def _where(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": item["id"], "output_index": self.items.index(item)}

    def _close_message(self, status: str = "completed") -> list[Event]:
        msg = self._msg
        if msg is None:
            return []
        self._msg = None
        text = "".join(self._texts)
        part = wire.text_part(text, self._lps if self._logprobs else None)
        part["annotations"] = [file_citation(f, name, len(text)) for f, name in self.citations]
        msg["content"] = [part]
        msg["status"] = status
        where = self._where(msg)
        self._texts, self._lps = [], []
        cited: list[Event] = [
            (
                "response.output_text.annotation.added",
                {**where, "content_index": 0, "annotation_index": k, "annotation": a},
            )
            for k, a in enumerate(part["annotations"])
        ]
        return [
            *cited,
            (
                "response.output_text.done",
                {**where, "content_index": 0, "text": text, "logprobs": part["logprobs"]},
            ),
            ("response.content_part.done", {**where, "content_index": 0, "part": part}),
            ("response.output_item.done", {"output_index": where["output_index"], "item": msg}),
        ]

    def _close_call(self, status: str = "completed") -> list[Event]:
        call = self._call
        if call is None:
            return []
        self._call = None
        call["arguments"] = "".join(self._args)
        call["status"] = status
        self._args = []
        where = self._where(call)
        return [
            (
                "response.function_call_arguments.done",
                {**where, "name": call["name"], "arguments": call["arguments"]},
            ),
            ("response.output_item.done", {"output_index": where["output_index"], "item": call}),
        ]

    def finish(self, incomplete: bool = False) -> list[Event]:
        """Close the open items (their ``done`` events); ``incomplete``: the answer was cut
        off (``max_output_tokens``), and the item it was writing says so, as the
        reference's does."""
        status = "incomplete" if incomplete else "completed"
        return self._close_message(status) + self._close_call(status)


@dataclass(slots=True)
class ResponseRun:
    """One opened response: its generation and everything its object repeats."""

    gen: Generation
    principal: Principal
    response_id: str
    created_at: int
    echoed: dict[str, Any]
    input_items: list[dict[str, Any]]
    store_region: str | None  # where it will be stored; None: ``store: false``
    assembler: _Assembler
    error: dict[str, Any] | None = field(default=None)

    def close(self) -> list[Event]:
        """Close the open items once the answer has ended (``Assembler.finish``)."""
        return self.assembler.finish(incomplete=self.gen.finish_reasons[0] == "length")

    def response(self, status: str | None = None) -> dict[str, Any]:
        """The response object now (``status`` overrides the one the answer implies)."""
        finish = self.gen.finish_reasons[0]
        incomplete = "max_output_tokens" if finish == "length" else None
        if status is None:
            status = "failed" if self.error else "incomplete" if incomplete else "completed"
        done = status != "in_progress"
        return wire.response_dict(
            response_id=self.response_id,
            created_at=self.created_at,
            model=self.gen.request.model,
            echoed=self.echoed,
            status=status,
            output=self.assembler.items if done else [],
            usage=self.gen.usage if done else None,
            error=self.error,
            incomplete_reason=incomplete if status == "incomplete" else None,
        )


def _drop_oldest_turn(messages: list[ChatMessage]) -> list[ChatMessage] | None:
    """``messages`` without their oldest turn (up to the second user message), the system
    message kept; ``None`` when only one user turn is left (``truncation: "auto"``)."""
    start = 1 if messages and messages[0].role == "system" else 0
    users = [i for i in range(start, len(messages)) if messages[i].role == "user"]
    if len(users) < 2:
        return None
    return messages[:start] + messages[users[1] :]


class ResponsesService(GenerationService):
    def __init__(
        self,
        models: ModelRegistry,
        meter: Meter,
        metrics: Metrics,
        store: ResponseStore,
        file_search: Callable[[], FileSearch | None] = lambda: None,
    ) -> None:
        super().__init__(models, meter, metrics)
        self.store = store
        self._file_search = file_search

    async def open(
        self, principal: Principal, body: ResponseCreateRequest, ctx: CallContext
    ) -> ResponseRun:
        """Validate, resolve the chain, convert, prepare and admit; every error here precedes
        the first byte.

        Raises:
            InvalidRequestError, UnsupportedParameterError: bad or unserved input (400).
            NotFoundError: ``previous_response_id`` (or a link of its chain) is not readable.
            PermissionDeniedError: the key may not store in this gateway's region (403).
            and every error of ``Generation.open``.
        """
        check_request(body)
        items = normalize_input(body.input)
        tools = tools_in(body.tools)
        choice_left, search_tool = split_choice(
            body.tool_choice, file_search_tool(body.tools), len(tools)
        )
        choice = tool_choice(choice_left, tools)
        fmt = text_format(body.text)
        store_region = self.store.storage_region(principal) if body.store is not False else None
        earlier: list[dict[str, Any]] = []
        affinity = None
        if body.previous_response_id is not None:
            history = await self.store.history(principal, body.previous_response_id)
            earlier, affinity = history.items, history.replica_id
        logprobs = "message.output_text.logprobs" in (body.include or ())
        messages = conversation(body.instructions, earlier + items)
        found: FoundFiles | None = None
        if search_tool is not None:
            with_results = "file_search_call.results" in (body.include or ())
            found = await self._search(principal, search_tool, messages, ctx, with_results)
            messages = found.messages
        request = InferenceRequest(
            request_id=ctx.request_id,
            model=body.model,
            messages=messages,
            sampling=SamplingParams(
                max_tokens=body.max_output_tokens,
                temperature=1.0 if body.temperature is None else body.temperature,
                top_p=1.0 if body.top_p is None else body.top_p,
                response_format=fmt,
                logprobs=logprobs,
                top_logprobs=(body.top_logprobs or 0) if logprobs else 0,
            ),
            tools=tools,
            tool_choice=choice,
            parallel_tool_calls=body.parallel_tool_calls is not False,
            stream=bool(body.stream),
        )
        gen = await self._generation(principal, request, ctx, affinity, body.truncation == "auto")
        assembler = _Assembler(logprobs)
        if found is not None:
            assembler.searched(found.item, found.citations)
        return ResponseRun(
            gen=gen,
            principal=principal,
            response_id=item_id("resp"),
            created_at=int(time.time()),
            echoed=wire.echoed_fields(body),
            input_items=items,
            store_region=store_region,
            assembler=assembler,
        )

    async def _search(
        self,
        principal: Principal,
        tool: FileSearchTool,
        messages: list[ChatMessage],
        ctx: CallContext,
        with_results: bool,
    ) -> FoundFiles:
        """Run the ``file_search`` tool (see ``serving.response_tools``).

        Raises:
            ServiceUnavailableError: no knowledge index here.
            InvalidRequestError: no user message to search for; and the errors of
                ``FileSearch.search`` (404 unknown store, 403 region, 400 expired).
        """
        search = self._file_search()
        if search is None:
            raise ServiceUnavailableError(
                "The file_search tool needs the knowledge index, which this gateway's database "
                "has not (see docs/knowledge.md).",
                param=f"{tool.param}.type",
            )
        return await search_files(search, principal, tool, messages, ctx, with_results)

    async def _generation(
        self,
        principal: Principal,
        request: InferenceRequest,
        ctx: CallContext,
        affinity: str | None,
        truncate: bool,
    ) -> Generation:
        """``Generation.open``, after ``_fit`` for ``truncation: "auto"``."""
        try:
            if truncate:
                await self._fit(principal, request, ctx)
            return await self.generation(
                principal, request, ctx, endpoint="responses", affinity_replica=affinity
            )
        except ContextLengthExceededError as exc:
            raise exc.at("input") from None  # the Responses API has no 'messages'

    async def _fit(self, principal: Principal, request: InferenceRequest, ctx: CallContext) -> None:
        """``truncation: "auto"``: while the prompt (counted exactly, by the model's own
        tokenizer on an allowed replica: ``Engine.tokenize``, the tokens ``prepare`` feeds
        it) and ``max_output_tokens`` exceed the context window, drop the oldest turn (the
        instructions and the last user turn stay). What still does not fit is refused by
        ``Generation.open`` or the replica, as with ``disabled``. Not billed: counting is
        not generating."""
        if not principal.may_use_model(request.model):
            return  # Generation.open refuses it (403) without counting anything
        engine = self.models.get(request.model)
        window = engine.card.context_length
        request.routing = routing_hints(principal, ctx)
        wanted = request.sampling.max_tokens or 1
        while len(await engine.tokenize(request)) + wanted > window:
            shorter = _drop_oldest_turn(request.messages or [])
            if shorter is None:
                return
            request.messages = shorter

    async def _save(self, run: ResponseRun, response: dict[str, Any]) -> None:
        if run.store_region is None:
            return
        placement = placement_of(run.gen.prepared)
        replica = placement.replica_id if placement is not None else None
        await self.store.save(
            run.principal, NewResponse(response, run.input_items, replica), run.store_region
        )

    async def complete(self, run: ResponseRun) -> dict[str, Any]:
        """Run to the end, store, and return the ``response`` object."""
        try:
            async for delta in run.gen.deltas():
                run.assembler.feed(delta)
        except ContextLengthExceededError as exc:
            raise exc.at("input") from None
        run.close()
        response = run.response()
        await self._save(run, response)
        return response

    async def events(self, run: ResponseRun) -> AsyncGenerator[dict[str, Any], None]:
        """The stream's events in the reference's order: ``response.created``,
        ``response.in_progress``, the items' events, then ``response.completed`` (or
        ``response.incomplete``; ``error`` and ``response.failed`` when the engine fails
        mid-answer). Nothing is sent before the engine's first delta, so a failure before
        it is still a plain JSON error with its status."""
        writer = wire.EventWriter()
        started = False
        try:
            async for delta in run.gen.deltas():
                if not started:
                    started = True
                    for kind in ("response.created", "response.in_progress"):
                        yield writer.event(kind, response=run.response("in_progress"))
                    for kind, fields in run.assembler.opening():
                        yield writer.event(kind, **fields)
                for kind, fields in run.assembler.feed(delta):
                    yield writer.event(kind, **fields)
        except ModelgridError as exc:
            if not started:
                if isinstance(exc, ContextLengthExceededError):
                    raise exc.at("input") from None
                raise
            for kind, fields in run.assembler.finish():
                yield writer.event(kind, **fields)
            run.error = {"code": exc.code or "server_error", "message": exc.message}
            failed = run.response()
            await self._save(run, failed)
            yield writer.event("error", code=exc.code, message=exc.message, param=exc.param)
            yield writer.event("response.failed", response=failed)
            return
        if not started:  # an answer without any delta
            for kind in ("response.created", "response.in_progress"):
                yield writer.event(kind, response=run.response("in_progress"))
            for kind, fields in run.assembler.opening():
                yield writer.event(kind, **fields)
        for kind, fields in run.close():
            yield writer.event(kind, **fields)
        final = run.response()
        await self._save(run, final)
        last = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        yield writer.event(last, response=final)


__all__ = ["ResponseRun", "ResponsesService"]
