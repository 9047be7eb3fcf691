"""The in-process llama.cpp engine (llama-cpp-python), one replica per loaded model.

A ``Llama`` object is not thread-safe, so each replica owns one worker thread: requests queue
for it (``queue_depth``) and generate one at a time while the event loop stays free. Tokens
cross to the loop with ``call_soon_threadsafe``; a consumer that stops reading (client
disconnect) sets a cancel flag that the worker checks before each token, so the replica is
freed within one decode step. The KV cache keeps the previous prompt, and llama.cpp reuses the
longest common prefix on the next request (prompt caching).

Sampling follows the OpenAI parameters: ``temperature`` 0 is greedy; top-k and min-p are off
(OpenAI has neither); penalties are llama.cpp's presence/frequency penalties. Function calls
and JSON output are constrained with a GBNF grammar (``engines.grammar``) when the request
demands them; calls in the model's output are parsed by ``engines.output``. Log probabilities
are computed from the logits of the sampled position, only when asked for.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import json
import math
import random
import re
import threading
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import LlamaGrammar

from modelgrid.core.errors import ContextLengthExceededError, EngineError, InvalidRequestError
from modelgrid.core.types import (
    ChatMessage,
    Delta,
    FinishReason,
    InferenceRequest,
    RoutingHints,
    TokenLogprob,
    ToolCall,
    ToolChoiceMode,
)
from modelgrid.engines.base import PREPARED, ModelCard, PreparedRequest, TokenizeOptions
from modelgrid.engines.grammar import request_grammar
from modelgrid.engines.output import ChoiceOutput, token_text

_END = object()
# Private-use markers standing in for message contents while the template renders.
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"
_MARKS = re.compile(f"{_MARK_OPEN}(\\d+){_MARK_CLOSE}")
_CONTROL_LIKE = re.compile(r"<\|[^|<>\s]{1,48}\|>")  # <|im_start|>, <|endoftext|>, ...
MAX_TOKEN_CHARS = 64  # twice the longest token of the Qwen2 vocabulary (32 bytes, measured)


@dataclass(slots=True)
class _Payload:
    token_ids: list[int]
    grammar: str | None = None


def _call_dict(call: ToolCall) -> dict[str, Any]:
    """A call as chat templates expect it: Qwen's renders ``arguments | tojson``, so they go
    in as an object (the JSON text decoded), not as the wire's JSON string."""
    try:
        arguments: Any = json.loads(call.arguments)
    except ValueError:
        arguments = call.arguments
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


def _message_dict(m: ChatMessage) -> dict[str, Any]:
    d: dict[str, Any] = {"role": m.role, "content": m.content or ""}
    if m.name:
        d["name"] = m.name
    if m.tool_calls:
        d["tool_calls"] = [_call_dict(c) for c in m.tool_calls]
    if m.tool_call_id:
        d["tool_call_id"] = m.tool_call_id
    return d


def _tool_dicts(request: InferenceRequest) -> list[dict[str, Any]] | None:
    """The functions shown to the model, in the shape chat templates expect (none when
    ``tool_choice`` is ``none``)."""
    if request.tool_mode is ToolChoiceMode.NONE:
        return None
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                **({"description": t.description} if t.description else {}),
                "parameters": t.parameters or {"type": "object", "properties": {}},
            },
        }
        for t in request.tools
    ]


class _OnlinePrefix:
    """What the KV cache held for online traffic, kept aside while batch lines use the cache.

    llama.cpp reuses the longest common prefix of the context and the next prompt; a batch
    line in between replaces the online conversation's prefix with its own, so the next online
    request evaluates again what was cached (on the 0.5B model on 2 cores, ~5 ms a token: the
    +25-30 ms TTFT of online traffic beside a batch, ``bench/batch.py``). Before the first batch
    line after online work, sequence 0's cells are copied out (``llama_state_seq_get_data``:
    the K and V of each cached token, ~12 KiB a token for the 0.5B model); the first online
    request after batch work clears the cache and copies them back (``..._set_data``), with
    the token ids llama-cpp-python matches prompts against. Executor thread only.
    """

    def __init__(self) -> None:
        self.batch_in_cache = False
        self._kv: Any = None
        self._tokens: list[int] = []

    def before(self, llm: llama_cpp.Llama, preemptible: bool) -> None:
        if llm._is_recurrent or llm._is_hybrid:  # one state per sequence: nothing to keep
            return
        ctx = llm._ctx.ctx
        if preemptible and not self.batch_in_cache:
            n = llm.n_tokens
            size = llama_cpp.llama_state_seq_get_size(ctx, 0) if n else 0
            self._kv = (ctypes.c_uint8 * size)() if size else None
            if self._kv is not None:
                llama_cpp.llama_state_seq_get_data(ctx, self._kv, size, 0)
            self._tokens = llm.input_ids[:n].tolist() if self._kv is not None else []
            self.batch_in_cache = True
        elif not preemptible and self.batch_in_cache:
            self.batch_in_cache = False
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            llm.reset()  # type: ignore[no-untyped-call]
            kv, self._kv = self._kv, None
            if kv is None or not llama_cpp.llama_state_seq_set_data(ctx, kv, len(kv), 0):
                return  # nothing kept, or refused: the cache starts empty
            n = len(self._tokens)
            llm.input_ids[:n] = self._tokens
            llm.n_tokens = n  # logits are not live: generate evaluates the last token again


def _cached_prefix(llm: llama_cpp.Llama, ids: list[int]) -> int:
    """Prompt tokens llama.cpp will reuse from its KV cache instead of evaluating: the common
    prefix with what the context holds, less the last prompt token, which ``Llama.generate``
    always evaluates again to get fresh logits."""
    m = min(llm.n_tokens, len(ids))
    same = llm.input_ids[:m] == np.asarray(ids[:m], dtype=llm.input_ids.dtype)
    n = m if bool(same.all()) else int(np.argmin(same))
    return max(0, min(n, len(ids) - 1))


def _settle_prompt(llm: llama_cpp.Llama, ids: list[int]) -> None:
    """Evaluate every prompt token but the last now, so that ``Llama.generate`` evaluates the
    last one alone, as it does for a prompt found in the cache. llama.cpp's logits differ in
    their last bits between a token evaluated within a batch and alone (as its server's
    ``cache_prompt`` documentation warns), which can flip a sampled token: a seeded request
    then gives the same output whatever the cache holds (at the cost of one decode step
    when its prompt was not cached)."""
    keep = _cached_prefix(llm, ids)
    if keep < len(ids) - 1:
        llm.n_tokens = keep
        llm.eval(ids[keep:-1])


class LlamaCppEngine:
    """A llama.cpp replica of one GGUF model.

    Args:
        model_id: Served id.
        model_path: Verified GGUF file.
        n_ctx: Context window (tokens).
        n_threads: Decode threads (0 = all cores).
        n_batch: Prompt batch size (tokens).
        owned_by: ``owned_by`` shown in ``/v1/models``.
    """

    def __init__(
        self,
        model_id: str,
        model_path: Path,
        *,
        n_ctx: int = 4096,
        n_threads: int = 0,
        n_batch: int = 512,
        owned_by: str = "qwen",
    ) -> None:
        self.card = ModelCard(
            model_id=model_id, owned_by=owned_by, created=int(time.time()), context_length=n_ctx
        )
        self._path = model_path
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._n_batch = n_batch
        self._llm: llama_cpp.Llama | None = None
        self._formatter: Jinja2ChatFormatter | None = None
        self._formatter_no_gen: Jinja2ChatFormatter | None = None  # add_generation_prompt off
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{model_id}")
        self._waiting = 0
        self._load_lock = asyncio.Lock()
        # llama.cpp asks this between the operations of a decode step (hundreds per token),
        # while a prompt is prefilled, and through the whole of a preemptible request: a
        # request whose client left during its prefill, or a cancelled batch line, frees the
        # replica within about a millisecond, not at the end of its step; an online request's
        # decode steps run without it (they pay nothing; the cancel flag is read per token).
        self._abort_on: threading.Event | None = None
        self._online_prefix = _OnlinePrefix()
        self._abort_callback = llama_cpp.ggml_abort_callback(self._should_abort)
        self._no_abort = llama_cpp.ggml_abort_callback()  # a NULL function pointer

    @property
    def ready(self) -> bool:
        return self._llm is not None

    @property
    def queue_depth(self) -> int:
        return self._waiting

    async def start(self) -> None:
        async with self._load_lock:
            if self._llm is None:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        import os

        threads = self._n_threads or (os.cpu_count() or 1)
        llm = llama_cpp.Llama(
            model_path=str(self._path),
            n_ctx=self._n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=self._n_batch,
            verbose=False,
        )
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise EngineError(f"{self._path.name} carries no chat template in its metadata.")
        eos = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "replace")
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token="")
        self._formatter_no_gen = Jinja2ChatFormatter(
            template=template, eos_token=eos, bos_token="", add_generation_prompt=False
        )
        self._llm = llm

    # -- request preparation (event loop; tokenization is fast and read-only) --

    def render_prompt(self, request: InferenceRequest) -> str:
        """The model's chat template applied to the messages (or the raw prompt).

        Raises:
            InvalidRequestError: the template rejects the conversation.
        """
        return "".join(text for text, _ in self.prompt_segments(request))

    def prompt_segments(
        self, request: InferenceRequest, generation_prompt: bool = True
    ) -> list[tuple[str, bool]]:
        """The prompt as (text, is_control) pieces: the template's own text, in which
        ``<|im_start|>`` and the like are control tokens, and the messages' contents, which
        are tokenized as plain text so a user can't forge a system turn by typing one. A raw
        ``prompt`` (``/v1/completions``) is the caller's own template: all control.
        ``generation_prompt``: end with the opening of the assistant's turn (as generation
        does).

        Raises:
            InvalidRequestError: the template rejects the conversation.
        """
        if request.prompt is not None:
            return [(request.prompt, True)]
        messages = request.messages or []
        # Continuing the final message: the turn is rendered closed, then cut right after its
        # text (vLLM's ``continue_final_message`` does the same with the rendered string).
        last = len(messages) - 1 if request.continue_final_message and messages else None
        opened = generation_prompt and last is None
        formatter = self._formatter if opened else self._formatter_no_gen
        assert formatter is not None
        dicts = [_message_dict(m) for m in messages]
        # Contents without anything that looks like a control token are tokenized with the
        # template in one piece, exactly as the model was trained; only when a content holds
        # one (or it is the message to continue) is it cut out and tokenized as plain text.
        forged = any(_CONTROL_LIKE.search(m.content or "") for m in messages)
        for i, d in enumerate(dicts):
            if (forged or i == last) and d["content"]:
                d["content"] = f"{_MARK_OPEN}{i}{_MARK_CLOSE}"
        try:
            rendered = formatter(
                messages=dicts,  # type: ignore[arg-type]  # llama_types' TypedDicts, as dicts
                tools=_tool_dicts(request),  # type: ignore[arg-type]
            ).prompt
        except Exception as exc:  # jinja raises many kinds; none may become a 500
            raise InvalidRequestError(
                f"The messages cannot be rendered with the model's chat template: {exc}",
                param="messages",
            ) from exc
        pieces = _MARKS.split(rendered)  # template, index, template, index, ..., template
        out: list[tuple[str, bool]] = []
        for k, piece in enumerate(pieces):
            if k % 2 == 0:
                if piece:
                    out.append((piece, True))
            elif int(piece) < len(messages):
                out.append((messages[int(piece)].content or "", False))
                if int(piece) == last:
                    return out  # the turn goes on: its closing text is left out
            else:  # a marker look-alike from tool JSON: plain text
                out.append((f"{_MARK_OPEN}{piece}{_MARK_CLOSE}", False))
        if last is not None:
            raise InvalidRequestError(
                "The model's chat template does not render the final message's text, so it"
                " cannot be continued.",
                param="messages",
            )
        return out

    def tokenize_text(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        assert self._llm is not None
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def tokenize_segments(
        self, segments: list[tuple[str, bool]], add_bos: bool = True
    ) -> list[int]:
        ids: list[int] = []
        for i, (text, control) in enumerate(segments):
            ids += self.tokenize_text(text, add_bos=add_bos and i == 0, special=control)
        return ids

    async def tokenize(
        self, request: InferenceRequest, options: TokenizeOptions = PREPARED
    ) -> list[int]:
        """The ids ``prepare`` would feed the model (with ``PREPARED``): the same template,
        the same segments, the same tokenizer calls. A raw prompt without
        ``add_special_tokens`` is tokenized without the BOS (a no-op for Qwen, which has
        none)."""
        if self._llm is None:
            raise EngineError("The model is not loaded yet.")
        self._refuse_surely_too_long(request)
        segments = self.prompt_segments(request, options.add_generation_prompt)
        raw = request.prompt is not None
        return self.tokenize_segments(segments, add_bos=options.add_special_tokens or not raw)

    async def detokenize(self, tokens: Sequence[int], routing: RoutingHints | None = None) -> str:
        """The text of ``tokens``, special tokens included (invalid UTF-8 as U+FFFD).

        Raises:
            InvalidRequestError: an id outside the vocabulary (param ``tokens``).
        """
        llm = self._llm
        if llm is None:
            raise EngineError("The model is not loaded yet.")
        vocab = llm.n_vocab()
        bad = next((t for t in tokens if not 0 <= t < vocab), None)
        if bad is not None:
            raise InvalidRequestError(
                f"Token id {bad} is outside this model's vocabulary (0..{vocab - 1}).",
                param="tokens",
            )
        return llm.detokenize(list(tokens), special=True).decode("utf-8", "replace")

    def _refuse_surely_too_long(self, request: InferenceRequest) -> None:
        """Refuse a prompt that can't fit without tokenizing it (tokenizing megabytes would
        block the event loop for seconds): no token of this vocabulary is longer than
        ``MAX_TOKEN_CHARS`` characters, so a text of more than ``n_ctx * MAX_TOKEN_CHARS``
        characters has more than ``n_ctx`` tokens.

        Raises:
            ContextLengthExceededError: the text alone is too long for the window.
        """
        chars = len(request.prompt or "") + sum(
            len(m.content or "") for m in request.messages or ()
        )
        if chars > self._n_ctx * MAX_TOKEN_CHARS:
            raise ContextLengthExceededError(
                f"This model's maximum context length is {self._n_ctx} tokens. However, your "
                f"input has {chars} characters, more than {self._n_ctx} tokens can hold. "
                "Please reduce the length of the input.",
                param="prompt" if request.prompt is not None else "messages",
            )

    def prepare(self, request: InferenceRequest) -> PreparedRequest:
        if self._llm is None:
            raise EngineError("The model is not loaded yet.")
        self._refuse_surely_too_long(request)
        ids = self.tokenize_segments(self.prompt_segments(request))
        n_prompt = len(ids)
        limit = self._n_ctx
        wanted = request.sampling.max_tokens
        if n_prompt >= limit or (wanted is not None and n_prompt + wanted > limit):
            asked = f" + {wanted} max tokens" if wanted is not None else ""
            where = "prompt" if request.prompt is not None else "messages"
            raise ContextLengthExceededError(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{n_prompt + (wanted or 0)} tokens ({n_prompt} in the {where}{asked}). "
                f"Please reduce the length of the {where} or the completion.",
                param=where,
            )
        max_new = wanted if wanted is not None else limit - n_prompt
        grammar = request_grammar(request)
        if grammar is not None:
            self._check_grammar(grammar, request)
        return PreparedRequest(
            request=request,
            prompt_tokens=n_prompt,
            max_new_tokens=max_new,
            payload=_Payload(ids, grammar),
        )

    def _check_grammar(self, grammar: str, request: InferenceRequest) -> None:
        """llama.cpp must accept the grammar: a rejected one would fail inside the sampler.

        Raises:
            InvalidRequestError: it does not (blamed on the schema that produced it).
        """
        assert self._llm is not None
        sampler = llama_cpp.llama_sampler_init_grammar(
            self._llm._model.vocab, grammar.encode(), b"root"
        )
        if not sampler:
            forced = request.tool_mode in (ToolChoiceMode.REQUIRED, ToolChoiceMode.FUNCTION)
            param = "tools" if forced else "response_format"
            raise InvalidRequestError(
                "The schema cannot be enforced as a llama.cpp grammar.", param=param
            )
        llama_cpp.llama_sampler_free(sampler)

    # -- generation --

    async def stream(self, prepared: PreparedRequest) -> AsyncGenerator[Delta, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        self._waiting += 1
        started = [False]

        def job() -> None:
            started[0] = True
            loop.call_soon_threadsafe(self._dequeued)
            try:
                self._generate(prepared, emit, cancel)
            except BaseException as exc:
                emit(exc)
            finally:
                emit(_END)

        future = loop.run_in_executor(self._executor, job)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    if isinstance(item, EngineError):
                        raise item
                    raise EngineError("The engine failed while generating.") from item
                yield item
            await future
        finally:
            cancel.set()
            if not started[0] and future.cancel():
                self._waiting -= 1

    def _dequeued(self) -> None:
        self._waiting -= 1

    def _should_abort(self, _data: Any) -> bool:
        flag = self._abort_on
        return flag is not None and flag.is_set()

    def _generate(
        self, prepared: PreparedRequest, emit: Callable[[Any], None], cancel: threading.Event
    ) -> None:
        """Generate every choice. A request cancelled during its prefill (its client gone),
        or a preemptible request (a batch line) cancelled at any point, is aborted inside the
        decode step it is in (``llama_decode`` returns 2 and restores the KV cache as it was
        before the step; the steps before it stay cached, the next request starts clean)."""
        llm = self._llm
        assert llm is not None
        preemptible = prepared.request.preemptible
        self._online_prefix.before(llm, preemptible)
        self._abort_on = cancel
        llama_cpp.llama_set_abort_callback(llm._ctx.ctx, self._abort_callback, None)

        def prefilled() -> None:  # an online request decodes without the callback
            if not preemptible and self._abort_on is not None:
                llama_cpp.llama_set_abort_callback(llm._ctx.ctx, self._no_abort, None)
                self._abort_on = None

        try:
            self._choices(prepared, emit, cancel, prefilled)
        except RuntimeError:  # llama-cpp-python's "llama_decode returned 2": aborted
            if not cancel.is_set():
                raise
        finally:
            llama_cpp.llama_set_abort_callback(llm._ctx.ctx, self._no_abort, None)
            self._abort_on = None

    def _choices(
        self,
        prepared: PreparedRequest,
        emit: Callable[[Any], None],
        cancel: threading.Event,
        prefilled: Callable[[], None],
    ) -> None:
        llm = self._llm
        assert llm is not None
        ids = prepared.payload.token_ids
        grammar = prepared.payload.grammar
        request = prepared.request
        sp = request.sampling
        vocab = llm._model.vocab
        base_seed = sp.seed if sp.seed is not None else random.getrandbits(31)
        for index in range(request.n):
            if cancel.is_set():
                return
            llm.set_seed((base_seed + index) & 0x7FFFFFFF)
            if index == 0:
                prepared.cached_prompt_tokens = _cached_prefix(llm, ids)
            if sp.seed is not None:
                _settle_prompt(llm, ids)
            out = ChoiceOutput(index, request)
            finish = FinishReason.LENGTH
            gen = llm.generate(
                ids,
                top_k=sp.top_k,
                top_p=sp.top_p,
                min_p=0.0,
                typical_p=1.0,
                temp=sp.temperature,
                repeat_penalty=sp.repetition_penalty,
                frequency_penalty=sp.frequency_penalty,
                presence_penalty=sp.presence_penalty,
                grammar=LlamaGrammar.from_string(grammar) if grammar else None,
            )
            try:
                for token in gen:
                    prefilled()
                    if cancel.is_set():
                        return
                    if llama_cpp.llama_vocab_is_eog(vocab, token):
                        finish = FinishReason.STOP
                        break
                    logprob = self._logprob(token, sp.top_logprobs) if sp.logprobs else None
                    for delta in out.token(llm.detokenize([token]), logprob):
                        emit(delta)
                    if out.stopped:
                        finish = FinishReason.STOP
                        break
                    if out.produced >= prepared.max_new_tokens:
                        break
            finally:
                gen.close()
            for delta in out.finish(finish):
                emit(delta)

    def _logprob(self, token: int, top: int) -> TokenLogprob:
        """``token``'s log probability under the logits it was just sampled from (the last
        decoded position), with the ``top`` most likely alternatives."""
        llm = self._llm
        assert llm is not None
        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))
        peak = float(logits.max())
        log_z = peak + math.log(float(np.exp(logits - peak, dtype=np.float64).sum()))

        def entry(t: int) -> TokenLogprob:
            data = llm.detokenize([t], special=True)
            return TokenLogprob(token_text(data), data, float(logits[t]) - log_z)

        alternatives: tuple[TokenLogprob, ...] = ()
        if top:
            best = np.argpartition(logits, -top)[-top:]
            best = best[np.argsort(-logits[best], kind="stable")]
            alternatives = tuple(entry(int(t)) for t in best)
        return dataclasses.replace(entry(token), top=alternatives)

    async def aclose(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._llm = None


__all__ = ["LlamaCppEngine"]
