"""Calling an app (DashScope's Application API) on top of ``Generation`` (framework-free).

One call, in order (every step before the generation's first byte, so its errors are plain
JSON with their status):

1. The app (the caller's workspace's, else 404 ``app_not_found``) and the session that
   ``input.session_id`` names (of this app and workspace, else 404 ``session_not_found``);
   sessions live in this gateway's region (403 ``region_not_allowed`` for a key that may not
   keep data there).
2. The conversation: ``input.messages`` when given (it replaces the session's history, as
   on DashScope), else the session's last ``HISTORY_TURNS`` turns and ``input.prompt``.
   With knowledge bases to search, the prompt as it is before retrieval (step 5 without the
   passages) must fit the model's context window with ``max_tokens``, else 400
   ``context_length_exceeded`` before anything is billed (``serving.app_window``); the
   final prompt is checked again by ``Generation.open`` and the replica (passages that
   overflow it are refused there, after retrieval).
3. The retrieval query, made from the conversation as the app's ``query_rewrite`` says
   (``serving.query_rewrite``): ``concat`` (the default: the last earlier user turns and the
   new one), or ``model`` (the app's model writes one standalone query, a metered request of
   its own under ``dashscope.apps.rewrite``, before retrieval; only when there is something
   to retrieve from and an earlier turn to resolve).
4. Retrieval through ``serving.knowledge.Retrieval`` (metered to the caller under a request
   id of its own, residency-checked) over ``parameters.rag_options.pipeline_ids`` (else the
   app's knowledge bases; an empty list is as if none were given): an unknown id is a 400 naming every unknown one; a retrieval
   failure is the request's error, never swallowed. Per knowledge base the best ``top_k``;
   several are fused by reciprocal rank fusion. ``file_ids`` keeps only those documents'
   chunks; an id that is no document of the knowledge bases searched (unknown, another
   knowledge base's or another workspace's: one answer, no existence leak) is a 400 naming
   every such id, checked before any search. ``metadata_filter`` keeps the documents whose
   metadata has each of its keys with an equal value, ``tags`` those carrying every tag
   listed (``protocol.document_labels``, which cites DashScope's reference), both among
   ``file_ids`` when given; a malformed one is a 400 naming it, before anything runs. Filters
   that leave no document are no error: nothing is searched (or embedded), the answer has
   no passages and ``doc_references`` is ``[]``. With the app's ``retrieval.rerank`` the best
   ``max(top_k, RERANK_CANDIDATES)`` chunks so found are re-ranked by the app's model
   (``serving.rerank``: its P(yes) for each chunk and the query, which becomes the chunk's
   score; one metered request per chunk under ``dashscope.apps.rerank``, billed to the
   caller; a failed judgement is the request's error) and the best ``top_k`` kept.
5. The prompt: the app's instructions as the system message (``${name}`` filled from
   ``biz_params.user_prompt_params``; the client's own system messages appended; with
   ``input.memory_id`` the facts that memory holds, ``serving.memory``); the
   conversation; the new user turn with the passages before the question (a 0.5B model
   follows context next to the question, not in the system prompt). With
   ``input.doc_reference_type: "indexed"`` the passages are numbered ``[1]``… and the model
   is asked to cite them by those markers.
6. A new session if none was named, then ``Generation`` (scope, routing, admission, one
   usage record under ``dashscope.apps``). With the app's ``tools`` (plugins,
   ``serving.app_tools``): ``biz_params``' pass-through values and user tokens are checked in
   step 1 (a 400 naming a missing one), this generation is the first round, with the tools
   declared; when the model calls tools the plugins are called (``serving.plugin_http``) and
   further rounds run in the same response (their text streamed as it comes; each round its
   own usage record under ``dashscope.apps``, ``usage.models`` their sum; a later round's
   error is an error event in the stream).

The answer's ``doc_references``: every passage given (``simple``, the default), or with
``indexed`` the passages whose ``[n]`` the answer cites (all given, when it cites none). A
completed answer (with tools, the last round's text) is stored as the session's next turn
(and, with a ``memory_id``, the facts its user turn states, by the rules) before the last
event is sent, so the next request sees it. With the app's ``memory_extraction: "model"`` the facts are extracted by the model
(``serving.memory_extraction``, metered under ``dashscope.apps.memory``) in a task started
as the last event goes out; ``AppService.aclose`` waits for those tasks on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import string
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, replace
from typing import Any

from modelgrid.core.errors import (
    InvalidRequestError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from modelgrid.core.ids import new_request_id
from modelgrid.core.types import CallContext, ChatMessage, InferenceRequest, ToolChoice
from modelgrid.knowledge.fusion import reciprocal_rank_fusion
from modelgrid.protocol.dashscope.apps import (
    AppCompletionRequest,
    DocReference,
    ModelUsage,
    response_dict,
)
from modelgrid.protocol.dashscope.convert import to_inference_request
from modelgrid.protocol.dashscope.models import (
    GenerationInput,
    GenerationParameters,
    GenerationRequest,
    Message,
)
from modelgrid.protocol.document_labels import check_metadata, check_tags, passes
from modelgrid.protocol.openai.attribute_filters import Scalar
from modelgrid.serving.app_store import AppStore, Turn
from modelgrid.serving.app_tools import ToolRounds, ToolSet, next_request, tool_set, with_tools
from modelgrid.serving.app_window import refuse_unfit
from modelgrid.serving.generation import Generation, GenerationService
from modelgrid.serving.knowledge import Mode, Retrieval, Retrieved
from modelgrid.serving.memory import Memories, check_memory_id, recall_text
from modelgrid.serving.memory_extraction import model_facts
from modelgrid.serving.meter import Meter
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.models import ModelRegistry
from modelgrid.serving.plugin_http import PluginCaller
from modelgrid.serving.query_rewrite import Rewritten, concat_query, model_query
from modelgrid.serving.rerank import ChatReranker, candidates, rerank_hits
from modelgrid.storage.models import App, KnowledgeBase
from modelgrid.tenancy.service import Principal

log = logging.getLogger(__name__)

ENDPOINT = "dashscope.apps"
REWRITE_ENDPOINT = "dashscope.apps.rewrite"  # the model's query rewrite, in the usage ledger
MEMORY_ENDPOINT = "dashscope.apps.memory"  # the model's memory extraction
RERANK_ENDPOINT = "dashscope.apps.rerank"  # the model's re-ranking, one record per chunk
HISTORY_TURNS = 8  # a session's turns sent with a new prompt
SHUTDOWN_WAIT_S = 30.0  # how long ``aclose`` waits for memory extractions in flight
FILTERED_DEPTH = 100  # how deep to search when ``rag_options`` filters the documents
RAG = "parameters.rag_options"
MARKER = re.compile(r"\[(\d{1,3})\]")
CITE = (
    "Answer the question with the numbered passages above when they are relevant, and cite "
    "each passage you use with its number in brackets, such as [1]."
)


def cited(text: str, references: list[DocReference]) -> list[DocReference]:
    """The references whose ``[n]`` marker ``text`` cites, in order (all if it cites none)."""
    markers = {m.group(1) for m in MARKER.finditer(text)}
    used = [r for r in references if r.index_id in markers]
    return used or references


def _refuse_unknown_files(unknown: list[str]) -> None:
    """Raises: InvalidRequestError (``document_not_found``) naming every id of ``unknown``."""
    if unknown:
        names = ", ".join(f"'{i[:64]}'" for i in unknown[:20])
        more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
        plural = "s" if len(unknown) > 1 else ""
        raise InvalidRequestError(
            f"Unknown file id{plural} {names}{more}: no document of the knowledge bases "
            "searched has that id.",
            param="parameters.rag_options.file_ids",
            code="document_not_found",
        )


def _retrieval_ctx(ctx: CallContext) -> CallContext:
    """The call's context for one knowledge-base search: its own request id (the usage
    ledger's key: the query's embedding is a usage record of its own, beside the
    generation's), the caller's region preference, trace context and client id."""
    return replace(ctx, request_id=new_request_id(), response_headers={})


def _content(message: Message) -> str:
    if isinstance(message.content, list):
        return "".join(p.text or "" for p in message.content)
    return message.content or ""


def _instructions(app: App, biz_params: dict[str, Any] | None) -> str:
    values = (biz_params or {}).get("user_prompt_params")
    if not isinstance(values, dict) or not app.instructions:
        return app.instructions
    return string.Template(app.instructions).safe_substitute(
        {str(k): str(v) for k, v in values.items()}
    )


def _messages(instructions: str, history: list[Turn], user_turn: str) -> list[Message]:
    """The prompt: the system message (if any), the earlier turns, the new user turn."""
    messages = [Message(role="system", content=instructions)] if instructions else []
    for turn in history:
        messages.append(Message(role="user", content=turn.user))
        messages.append(Message(role="assistant", content=turn.assistant))
    messages.append(Message(role="user", content=user_turn))
    return messages


def _user_turn(prompt: str, refs: list[DocReference], searched: bool, indexed: bool) -> str:
    """The new user turn as the model sees it: the passages first, then the question (a
    small model follows context next to the question better than in the system prompt);
    ``indexed``: numbered, with the request to cite them."""
    if refs:
        if indexed:
            passages = "\n\n".join(f"[{r.index_id}] {r.text}" for r in refs)
            return f"{passages}\n\n{CITE}\n\nQuestion: {prompt}"
        passages = "\n\n".join(r.text for r in refs)
        return f"Use this information:\n\n{passages}\n\nQuestion: {prompt}"
    if searched:
        return f"(The knowledge base has nothing on this.)\n\nQuestion: {prompt}"
    return prompt


def _request(
    app: App, body: AppCompletionRequest, messages: list[Message], ctx: CallContext
) -> InferenceRequest:
    """The generation of ``messages`` by the app's model, with the call's parameters."""
    params = body.parameters
    wire = GenerationRequest(
        model=app.model,
        input=GenerationInput(messages=messages),
        parameters=GenerationParameters(
            max_tokens=params.max_tokens or app.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            seed=params.seed,
        ),
    )
    return to_inference_request(wire, ctx.request_id)


@dataclass(slots=True)
class AppRun:
    """One app call, opened: its generation and what the answer carries besides text."""

    gen: Generation
    principal: Principal
    ctx: CallContext
    model: str
    memory_extraction: str  # the app's: "rules" | "model"
    workspace_id: str
    session_id: str
    user_text: str
    references: list[DocReference]
    thoughts: list[dict[str, Any]] | None
    indexed: bool  # ``doc_reference_type: "indexed"``: the answer cites passages by [n]
    memory_id: str | None  # the end user's long-term memory (``serving.memory``)
    text: str = ""
    rounds: ToolRounds | None = None  # with tools: every round (``serving.app_tools``)

    @property
    def last(self) -> Generation:
        """The generation that made the answer (the last round's, with tools)."""
        return self.rounds.last if self.rounds is not None else self.gen

    def answer(self) -> str:
        """The answer as the session keeps it (with tools, the last round's text)."""
        return self.rounds.answer if self.rounds is not None else self.text

    def all_thoughts(self) -> list[dict[str, Any]] | None:
        if self.thoughts is None or self.rounds is None:
            return self.thoughts
        return self.thoughts + self.rounds.thoughts

    def usage(self) -> list[ModelUsage]:
        gens = self.rounds.gens if self.rounds is not None else [self.gen]
        prompt = sum(g.usage.prompt_tokens for g in gens)
        completion = sum(g.usage.completion_tokens for g in gens)
        return [ModelUsage(self.model, prompt, completion)]


class AppService(GenerationService):
    """DashScope's Application API (see the module docstring).

    Args:
        models, meter, metrics: As ``GenerationService``.
        store: Apps, sessions and documents' names.
        retrieval: Knowledge-base retrieval now (``None``: this gateway has no index; an app
            call that needs it answers 503).
        plugins: Calls apps' plugins (default: no network allowed beyond the public rules).
    """

    def __init__(
        self,
        models: ModelRegistry,
        meter: Meter,
        metrics: Metrics,
        store: AppStore,
        retrieval: Callable[[], Retrieval | None],
        plugins: PluginCaller | None = None,
    ) -> None:
        super().__init__(models, meter, metrics)
        self.plugins = plugins or PluginCaller(metrics)
        self.store = store
        self.memories = Memories(store.sessions)
        self._retrieval = retrieval
        self._background: set[asyncio.Task[None]] = set()

    async def open(
        self,
        principal: Principal,
        app_id: str,
        body: AppCompletionRequest,
        ctx: CallContext,
        *,
        stream: bool,
    ) -> AppRun:
        """Steps 1 to 6 of the module docstring.

        Raises:
            NotFoundError: ``app_not_found``, ``session_not_found`` (404).
            InvalidRequestError: unknown ``pipeline_ids`` (``knowledge_base_not_found``),
                ``file_ids`` no document of those knowledge bases has
                (``document_not_found``), a ``metadata_filter`` that is no object of at
                most 16 keys with string, number or boolean values, ``tags`` that are no
                array of at most 20 strings of 1..64 characters (both before anything runs),
                a conversation that does not end with a user turn; with tools, a missing
                ``biz_params`` pass-through value or user token (``serving.app_tools``,
                before anything runs).
            ContextLengthExceededError: the prompt cannot fit the model's window, before
                retrieval (``serving.app_window``) or with the passages.
            PermissionDeniedError: ``region_not_allowed``; ``model_not_allowed`` (a key that
                may not use the app's model, before anything is billed); see
                ``Generation.open``.
            ServiceUnavailableError: knowledge bases asked for where none are available.
            Every error of ``Retrieval.search`` and ``Generation.open``.
        """
        ws = principal.workspace_id
        inp, params = body.input, body.parameters
        rag = params.rag_options
        memory_id = check_memory_id(inp.memory_id) if inp.memory_id is not None else None
        metadata_filter = tags = None
        if rag is not None:  # checked before anything runs
            metadata_filter = check_metadata(rag.metadata_filter, f"{RAG}.metadata_filter")
            tags = check_tags(rag.tags, f"{RAG}.tags")
        app = await self.store.app(ws, app_id)
        self.store.check_residency(principal)
        if not principal.may_use_model(app.model):  # before any billed work (the retrieval's)
            raise PermissionDeniedError(
                f"This API key may not use the model '{app.model}'.",
                param="model",
                code="model_not_allowed",
            )
        tools = None
        if app.tools:  # the pass-through values and tokens, before anything runs
            defined = self.store.tools(app)
            tools = tool_set(app.id, defined, app.tool_choice, app.max_tool_rounds, inp.biz_params)
        if inp.session_id is not None:
            await self.store.check_session(ws, app.id, inp.session_id)
        history, user_text, client_system = await self._conversation(ws, inp.session_id, body)
        pipeline_ids = (
            list(dict.fromkeys(rag.pipeline_ids))
            if rag is not None and rag.pipeline_ids  # [] is not given: the app's bases
            else list(app.knowledge_base_ids)
        )
        bases, file_ids = await self._sources(ws, pipeline_ids, rag, metadata_filter, tags)
        instructions = _instructions(app, inp.biz_params)
        indexed = inp.doc_reference_type == "indexed"
        if client_system:
            instructions = f"{instructions}\n\n{client_system}".strip()
        if memory_id is not None:
            recalled = recall_text(await self.memories.recall(ws, memory_id))
            instructions = f"{instructions}\n\n{recalled}".strip()
        if pipeline_ids:  # billed work (rewrite, embedding, re-ranking) precedes the answer
            bare = _messages(instructions, history, user_text)
            where = "input.messages" if inp.messages else "input.prompt"
            await refuse_unfit(
                self.models, principal, _request(app, body, bare, ctx), ctx, param=where
            )
        rewritten = await self._query(principal, app, history, user_text, pipeline_ids, ctx)
        query = rewritten.query
        refs = await self._retrieve(principal, app, bases, file_ids, query, ctx)
        user_turn = _user_turn(user_text, refs, bool(pipeline_ids), indexed)
        request = _request(app, body, _messages(instructions, history, user_turn), ctx)
        request.stream = stream
        if tools is not None:
            with_tools(request, tools)
        session_id = inp.session_id or await self.store.new_session(ws, app.id)
        gen = await self.generation(principal, request, ctx, endpoint=ENDPOINT)
        rounds = self._rounds(principal, ctx, gen, tools) if tools is not None else None
        thoughts: list[dict[str, Any]] | None = [] if params.has_thoughts and tools else None
        if params.has_thoughts and pipeline_ids:
            thoughts = [
                {
                    "thought": "Searched the knowledge bases with the query "
                    + (
                        "the model rewrote from the conversation."
                        if rewritten.by == "model"
                        else "made from the conversation."
                    ),
                    "action_type": "api",
                    "action_name": "knowledge_retrieval",
                    "action": "rag",
                    "action_input": {
                        "query": query,
                        "pipeline_ids": pipeline_ids,
                        "top_k": app.top_k,
                        "mode": app.retrieval_mode,
                        "query_rewrite": rewritten.by,
                        "rerank": app.rerank,
                    },
                    "observation": json.dumps(
                        [r.to_dict() for r in refs], ensure_ascii=False, separators=(",", ":")
                    ),
                }
            ]
        return AppRun(
            gen,
            principal,
            ctx,
            app.model,
            app.memory_extraction,
            ws,
            session_id,
            user_text,
            refs,
            thoughts,
            indexed,
            memory_id,
            rounds=rounds,
        )

    def _rounds(
        self, principal: Principal, ctx: CallContext, first: Generation, tools: ToolSet
    ) -> ToolRounds:
        """The tool rounds after ``first``: each later round a generation of its own (a new
        request id, ``_retrieval_ctx``), metered under ``ENDPOINT``."""

        async def open_round(messages: list[ChatMessage], choice: ToolChoice) -> Generation:
            round_ctx = _retrieval_ctx(ctx)
            request = next_request(first.request, round_ctx.request_id, messages, choice)
            return await self.generation(principal, request, round_ctx, endpoint=ENDPOINT)

        return ToolRounds(tools, self.plugins, first, open_round)

    async def _query(
        self,
        principal: Principal,
        app: App,
        history: list[Turn],
        user_text: str,
        pipeline_ids: list[str],
        ctx: CallContext,
    ) -> Rewritten:
        """The retrieval query (step 3): the model's only where there is something to search
        and an earlier turn to resolve (a first question is its own query)."""
        if app.query_rewrite == "model" and pipeline_ids and history:
            return await model_query(
                self, principal, app.model, history, user_text, ctx, endpoint=REWRITE_ENDPOINT
            )
        return Rewritten(concat_query([t.user for t in history], user_text), "concat")

    async def _conversation(
        self, ws: str, session_id: str | None, body: AppCompletionRequest
    ) -> tuple[list[Turn], str, str]:
        """(earlier turns, the new user text, the client's own system text)."""
        inp = body.input
        if not inp.messages:
            stored = await self.store.turns(ws, session_id, HISTORY_TURNS) if session_id else []
            return stored, inp.prompt or "", ""
        system = "\n\n".join(_content(m) for m in inp.messages if m.role == "system")
        turns = [m for m in inp.messages if m.role in ("user", "assistant")]
        if inp.prompt:
            turns.append(Message(role="user", content=inp.prompt))
        if not turns or turns[-1].role != "user" or not _content(turns[-1]).strip():
            raise InvalidRequestError(
                "'input.messages' must end with a user message that has text.",
                param="input.messages",
            )
        history: list[Turn] = []
        pending: str | None = None
        for m in turns[:-1]:
            if m.role == "user":
                if pending is not None:
                    history.append(Turn(pending, ""))
                pending = _content(m)
            else:
                history.append(Turn(pending or "", _content(m)))
                pending = None
        if pending is not None:
            history.append(Turn(pending, ""))
        return history, _content(turns[-1]), system

    async def _sources(
        self,
        ws: str,
        pipeline_ids: list[str],
        rag: Any,
        metadata_filter: dict[str, Scalar] | None,
        tags: list[str] | None,
    ) -> tuple[dict[str, KnowledgeBase], set[str] | None]:
        """The knowledge bases to search, by id, and the documents to keep (``None``: every
        document): those of ``file_ids`` that pass ``metadata_filter`` and ``tags``
        (``protocol.document_labels``), checked before the query is made (a bad id costs no
        rewrite). An empty set: the filters leave no document.

        Raises:
            InvalidRequestError: ``knowledge_base_not_found``, ``document_not_found``.
        """
        bases = await self.store.knowledge_bases(ws, pipeline_ids) if pipeline_ids else {}
        unknown = [i for i in pipeline_ids if i not in bases]
        if unknown:
            names = ", ".join(f"'{i[:64]}'" for i in unknown)
            plural = "s" if len(unknown) > 1 else ""
            raise InvalidRequestError(
                f"Unknown pipeline id{plural} {names}: no knowledge base of this workspace has "
                "that id.",
                param="parameters.rag_options.pipeline_ids",
                code="knowledge_base_not_found",
            )
        bases = {i: bases[i] for i in pipeline_ids}  # in the request's order (fusion's)
        known: set[str] | None = None
        if rag is not None and rag.file_ids:
            known = await self.store.documents_of(ws, pipeline_ids, rag.file_ids)
            _refuse_unknown_files([i for i in dict.fromkeys(rag.file_ids) if i not in known])
        if metadata_filter is None and tags is None:
            return bases, known
        labels = await self.store.document_labels(
            ws, pipeline_ids, sorted(known) if known is not None else None
        )
        return bases, {
            doc_id
            for doc_id, (metadata, carried) in labels.items()
            if passes(metadata_filter, tags, metadata, carried)
        }

    async def _retrieve(
        self,
        principal: Principal,
        app: App,
        bases: dict[str, KnowledgeBase],
        file_ids: set[str] | None,
        query: str,
        ctx: CallContext,
    ) -> list[DocReference]:
        pipeline_ids = list(bases)
        if not pipeline_ids or (file_ids is not None and not file_ids):
            return []  # nothing to search, or no document passes the filters: none embedded
        ws = principal.workspace_id
        retrieval = self._retrieval()
        if retrieval is None:
            raise ServiceUnavailableError("Knowledge bases are not available in this gateway.")
        top_k = app.top_k
        keep = candidates(top_k) if app.rerank else top_k  # the chunks fused (and judged)
        depth = FILTERED_DEPTH if file_ids else keep
        mode: Mode = app.retrieval_mode  # type: ignore[assignment]  # written from ``RetrievalMode`` only
        found = await asyncio.gather(
            *(
                retrieval.search(
                    principal,
                    kb_id,
                    bases[kb_id].embedding_model,
                    query,
                    top_k=depth,
                    mode=mode,
                    ctx=_retrieval_ctx(ctx),
                )
                for kb_id in pipeline_ids
            )
        )
        lists: list[list[Retrieved]] = [
            [r for r in hits if file_ids is None or r.chunk.document_id in file_ids]
            for hits in found
        ]
        if len(lists) == 1:
            best = [(r, r.score) for r in lists[0][:keep]]
        else:
            by_id = {r.chunk.id: r for hits in lists for r in hits}
            fused = reciprocal_rank_fusion(
                [[r.chunk.id for r in hits] for hits in lists], limit=keep
            )
            best = [(by_id[h.chunk_id], h.score) for h in fused]
        if app.rerank:
            judge = ChatReranker(self, app.model)
            hits = [r for r, _ in best]
            ranked = await rerank_hits(
                judge, principal, query, hits, lambda r: r.chunk.text, ctx, endpoint=RERANK_ENDPOINT
            )
            best = ranked[:top_k]
        doc_names = await self.store.document_names(ws, [r.chunk.document_id for r, _ in best])
        return [
            DocReference(
                index_id=str(n),
                doc_id=r.chunk.document_id,
                doc_name=doc_names.get(r.chunk.document_id, r.chunk.document_id),
                title=r.chunk.heading,
                text=r.chunk.text,
                knowledge_base_id=r.chunk.knowledge_base_id,
                chunk_id=r.chunk.id,
                score=score,
            )
            for n, (r, score) in enumerate(best, start=1)
        ]

    async def _finish(self, run: AppRun) -> str | None:
        """Store the turn (and the facts it states, with a ``memory_id``) if the answer
        completed; the finish reason."""
        reason = run.last.finish_reasons[0]
        if reason in ("stop", "length"):
            rid = run.gen.request.request_id
            await self.store.add_turn(
                run.workspace_id, run.session_id, run.user_text, run.answer(), rid
            )
            if run.memory_id is not None and run.memory_extraction == "model":
                self._spawn(self._extract(run, run.memory_id, rid))
            elif run.memory_id is not None:
                await self.memories.remember(run.workspace_id, run.memory_id, run.user_text, rid)
        return reason

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work, name="app-memory-extraction")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _extract(self, run: AppRun, memory_id: str, answer_request_id: str) -> None:
        """The model's facts of the turn into the memory. Runs after the answer: a failure has
        no client to go to, so it is logged (with its traceback) and the turn's facts are
        lost — never silently."""
        try:
            facts, out = await model_facts(
                self, run.principal, run.model, run.user_text, run.ctx, endpoint=MEMORY_ENDPOINT
            )
            await self.memories.remember_facts(
                run.workspace_id, memory_id, facts, answer_request_id
            )
        except Exception:
            log.exception(
                "memory extraction for the answer %s failed: no fact of the turn kept",
                answer_request_id,
            )
            return
        log.debug(
            "memory extraction %s: %d fact(s) in %.0f ms",
            out.request_id,
            len(facts),
            out.elapsed_ms,
        )

    async def drain(self) -> None:
        """Wait for the memory extractions in flight (tests and ``aclose``)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def aclose(self) -> None:
        """On shutdown: let the memory extractions in flight finish (``SHUTDOWN_WAIT_S`` at
        most, then they are cancelled), before the usage writer and the engines close."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), SHUTDOWN_WAIT_S)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*list(self._background), return_exceptions=True)

    def _body(
        self, run: AppRun, text: str, reason: str | None, final: bool, thoughts: bool = False
    ) -> dict[str, Any]:
        """A response body; ``final``: with the references and thoughts; ``thoughts``: with the
        thoughts so far (an event sent as a round of plugin calls ends)."""
        return response_dict(
            request_id=run.gen.request.request_id,
            text=text,
            finish_reason=reason,
            session_id=run.session_id,
            usage=run.usage(),
            doc_references=(
                (cited(run.text, run.references) if run.indexed else run.references)
                if final
                else None
            ),
            thoughts=run.all_thoughts() if final or thoughts else None,
        )

    async def _text(self, run: AppRun) -> AsyncGenerator[str, None]:
        """The answer's text as it comes (with tools, every round's)."""
        if run.rounds is not None:
            async with contextlib.aclosing(run.rounds.text()) as texts:
                async for text in texts:
                    yield text
            return
        async for delta in run.gen.deltas():
            if delta.text:
                yield delta.text

    async def complete(self, run: AppRun) -> dict[str, Any]:
        """Run to the end; the non-streamed response body."""
        async for text in self._text(run):
            run.text += text
        reason = await self._finish(run)
        return self._body(run, run.text, reason or "stop", final=True)

    async def events(self, run: AppRun, incremental: bool) -> AsyncGenerator[dict[str, Any], None]:
        """The ``data`` of each ``result`` event: one per text increment (the increment with
        ``incremental``, else the text so far); with tools and ``has_thoughts``, one more as
        each round of plugin calls ends, carrying the thoughts so far (no new text); then the
        last, with the finish reason, the references and thoughts (its text empty with
        ``incremental``)."""
        async for text in self._text(run):
            if not text:  # a round of plugin calls ran: with thoughts, show them now
                if run.thoughts is not None:
                    shown = "" if incremental else run.text
                    yield self._body(run, shown, None, final=False, thoughts=True)
                continue
            run.text += text
            yield self._body(run, text if incremental else run.text, None, final=False)
        reason = await self._finish(run)
        yield self._body(run, "" if incremental else run.text, reason or "stop", final=True)


__all__ = [
    "ENDPOINT",
    "MEMORY_ENDPOINT",
    "RERANK_ENDPOINT",
    "REWRITE_ENDPOINT",
    "AppRun",
    "AppService",
    "cited",
]
