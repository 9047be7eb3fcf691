"""An app's plugins at call time: rounds of generation and plugin calls (framework-free).

With tools, an app's answer is a loop (``docs/applications.md``, "Tools (plugins)"):

1. Before anything runs, ``tool_set`` reads ``input.biz_params``: every ``user_params`` value
   of every tool from ``user_defined_params.<tool>.<param>`` and, for a tool with a
   ``user_token_header``, ``user_defined_tokens.<tool>.user_token``; a missing or bad one
   (a value the tool's schema refuses, a token that is no header value) is a 400 naming it.
2. Each round is one metered generation of the app's model with the tools declared (the
   model sees each tool's schema without its ``user_params``), ``tool_choice`` the app's for
   the first round (``required``: constrained to calls, as chat's), ``auto`` after it, and
   ``none`` once ``max_tool_rounds`` rounds of calls have run. Its text is streamed as it
   comes; a round that ends without calls is the answer.
3. Each call's arguments must be a JSON object valid against the model-visible schema
   (``jsonschema``); the caller's pass-through values are merged in (they win over anything
   the model wrote under those names). The calls of one round run concurrently
   (``serving.plugin_http``). An invalid argument set or a failed call is no request error:
   its observation is ``{"error": …}``, which the model reads next round. The model reads at
   most ``MAX_OBSERVATION_CHARS`` of a plugin's text (``observation``).
4. The assistant turn with its calls and one ``tool`` message per result are appended to the
   conversation, and the next round runs (``open_round``: a new request id, one usage record
   each, under the app's endpoint).

A thought per call (``has_thoughts``): ``action_type: "api"``, ``action_name`` the tool,
``action: "plugin"``, ``action_input`` the model's own arguments (never the pass-through
values, so nothing the caller passed comes back), ``observation`` the plugin's text (cut at
``THOUGHT_BYTES``) or the error JSON, ``response`` the text the model wrote with the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from jsonschema import exceptions as schema_errors
from jsonschema import validators
from referencing import Registry
from referencing.exceptions import Unresolvable

from modelgrid.core.errors import InvalidRequestError
from modelgrid.core.types import (
    ChatMessage,
    InferenceRequest,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
)
from modelgrid.protocol.app_tools import AppTool, control_character, visible_schema
from modelgrid.serving.generation import Generation
from modelgrid.serving.plugin_http import PluginCaller
from modelgrid.serving.tool_calls import ToolCallFold

THOUGHT_BYTES = 4096
# the most of a plugin's text the model reads (a plugin may answer up to 64 KiB, more than a
# small model's whole context window)
MAX_OBSERVATION_CHARS = 8000
BIZ = "input.biz_params"


@dataclass(slots=True)
class ToolSet:
    """An app's tools for one call, with the caller's pass-through values and tokens."""

    app_id: str
    tools: dict[str, AppTool]
    choice: str  # the app's: "auto" | "required"
    max_rounds: int
    user_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def declared(self) -> tuple[Tool, ...]:
        """The functions the model sees."""
        return tuple(Tool(t.name, t.description, visible_schema(t)) for t in self.tools.values())

    def choice_for(self, rounds_done: int) -> ToolChoice:
        """The tool choice of the round after ``rounds_done`` rounds of calls."""
        if rounds_done >= self.max_rounds:
            return ToolChoice(ToolChoiceMode.NONE)
        if rounds_done == 0 and self.choice == "required":
            return ToolChoice(ToolChoiceMode.REQUIRED)
        return ToolChoice(ToolChoiceMode.AUTO)


def _bad(param: str, what: str) -> InvalidRequestError:
    return InvalidRequestError(f"'{param}' {what}.", param=param)


def _value_problem(tool: AppTool, name: str, value: Any) -> str | None:
    """Why a pass-through ``value`` does not fit the property ``name`` of the tool's full
    schema (``None``: it does; ``$defs``/``definitions`` kept for references)."""
    props = tool.parameters.get("properties")
    prop = props.get(name) if isinstance(props, dict) else None
    if not isinstance(prop, dict | bool):
        return None
    kept = {k: v for k, v in tool.parameters.items() if k in ("$schema", "$defs", "definitions")}
    schema = {**kept, "type": "object", "properties": {name: prop}}
    return argument_problem(schema, {name: value})


def _user_values(tool: AppTool, params: Any) -> dict[str, Any]:
    where = f"{BIZ}.user_defined_params"
    if not tool.user_params:
        return {}
    if params is None or (isinstance(params, dict) and params.get(tool.name) is None):
        name = tool.user_params[0]
        raise _bad(
            f"{where}.{tool.name}.{name}",
            f"is required: the tool '{tool.name}' takes '{name}' from the caller",
        )
    if not isinstance(params, dict):
        raise _bad(where, "must be an object (keyed by tool name)")
    given = params[tool.name]
    if not isinstance(given, dict):
        raise _bad(f"{where}.{tool.name}", "must be an object (keyed by parameter name)")
    values: dict[str, Any] = {}
    for name in tool.user_params:
        param = f"{where}.{tool.name}.{name}"
        if name not in given:
            raise _bad(param, f"is required: the tool '{tool.name}' takes '{name}' from the caller")
        problem = _value_problem(tool, name, given[name])
        if problem is not None:
            raise _bad(param, f"does not fit the tool's schema: {problem}")
        values[name] = given[name]
    return values


def _user_token(tool: AppTool, tokens: Any) -> str:
    where = f"{BIZ}.user_defined_tokens.{tool.name}.user_token"
    entry = tokens.get(tool.name) if isinstance(tokens, dict) else None
    token = entry.get("user_token") if isinstance(entry, dict) else None
    if token is None:
        raise _bad(where, f"is required: the tool '{tool.name}' calls with the end user's token")
    if not isinstance(token, str) or not token:
        raise _bad(where, "must be a non-empty string")
    bad = control_character(token)
    if bad is not None:
        raise _bad(
            where,
            f"holds the control character {bad}: it is sent as an HTTP header value, which "
            "may hold TAB, spaces and visible characters only",
        )
    return token


def tool_set(
    app_id: str,
    tools: Sequence[AppTool],
    choice: str,
    max_rounds: int,
    biz_params: dict[str, Any] | None,
) -> ToolSet:
    """The call's ``ToolSet`` (step 1 of the module docstring).

    Raises:
        InvalidRequestError: a pass-through value
            (``input.biz_params.user_defined_params.<tool>.<param>``) missing, or not valid
            against the property of that name in the tool's full ``parameters``; a
            ``user_defined_params`` or ``…<tool>`` that is no object; a user token
            (``input.biz_params.user_defined_tokens.<tool>.user_token``) missing, not a
            non-empty string, or holding a control character an HTTP header may not hold.
    """
    biz = biz_params or {}
    params = biz.get("user_defined_params")
    tokens = biz.get("user_defined_tokens")
    out = ToolSet(app_id, {t.name: t for t in tools}, choice, max_rounds)
    for tool in tools:
        out.user_values[tool.name] = _user_values(tool, params)
        if tool.user_token_header is not None:
            out.tokens[tool.name] = _user_token(tool, tokens)
    return out


def with_tools(request: InferenceRequest, tools: ToolSet) -> InferenceRequest:
    """``request`` as the first round: the tools declared, the app's tool choice."""
    request.tools = tools.declared()
    request.tool_choice = tools.choice_for(0)
    return request


def argument_problem(schema: dict[str, Any], arguments: Any) -> str | None:
    """Why ``arguments`` do not fit ``schema`` (``None``: they do)."""
    if not isinstance(arguments, dict):
        return "the arguments must be a JSON object"
    try:
        cls = validators.validator_for(schema)
        # an empty registry: references resolve within the schema only. Without one,
        # jsonschema fetches any other ``$ref`` (http, file) itself — on the event loop, to
        # any address: server-side request forgery (``control.app_tools`` refuses such a
        # ``$ref`` at creation; this holds for tools stored before that rule)
        validator = cls(schema, registry=Registry())
        error = schema_errors.best_match(validator.iter_errors(arguments))
    except (schema_errors.SchemaError, re.error, Unresolvable) as exc:
        return f"the tool's schema cannot be applied ({str(exc)[:200]})"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message[:300]}" + (f" (at '{where}')" if where else "")


def observation(text: str) -> str:
    """What the model reads of a plugin's ``text``: at most ``MAX_OBSERVATION_CHARS``
    characters, a longer one cut with ``…[truncated: N of M characters shown]``."""
    if len(text) <= MAX_OBSERVATION_CHARS:
        return text
    return (
        text[:MAX_OBSERVATION_CHARS]
        + f"…[truncated: {MAX_OBSERVATION_CHARS} of {len(text)} characters shown]"
    )


def _shown(text: str) -> str:
    data = text.encode("utf-8")
    return text if len(data) <= THOUGHT_BYTES else data[:THOUGHT_BYTES].decode("utf-8", "ignore")


OpenRound = Callable[[list[ChatMessage], ToolChoice], Awaitable[Generation]]


class ToolRounds:
    """The rounds of one app call (see the module docstring).

    Args:
        tools: The call's ``ToolSet``.
        caller: Calls the plugins.
        first: The first round's generation, opened before the first byte.
        open_round: Opens the next round's generation for a conversation and tool choice.
    """

    def __init__(
        self, tools: ToolSet, caller: PluginCaller, first: Generation, open_round: OpenRound
    ) -> None:
        self.tools = tools
        self._caller = caller
        self._open_round = open_round
        self.gens = [first]
        self.thoughts: list[dict[str, Any]] = []
        self.answer = ""  # the last round's text: the answer

    @property
    def last(self) -> Generation:
        return self.gens[-1]

    async def text(self) -> AsyncGenerator[str, None]:
        """The text of every round, as it comes, running the tools between rounds; an empty
        string once a round's calls have run (their thoughts are in ``thoughts``), before the
        next round opens, so that a stream can show them as they happen."""
        gen = self.gens[0]
        messages = list(gen.request.messages or [])
        rounds_done = 0
        while True:
            said = ""
            calls = ToolCallFold()
            async with contextlib.aclosing(gen.deltas()) as deltas:
                async for delta in deltas:
                    if delta.text:
                        said += delta.text
                        yield delta.text
                    for part in delta.tool_calls:
                        calls.add(part)
            self.answer = said
            if not calls:
                return
            made = calls.calls()
            done = await asyncio.gather(*(self._run(c, said) for c in made))
            results = [observation(text) for text, _ in done]
            self.thoughts += [thought for _, thought in done]  # in the calls' order
            messages.append(ChatMessage("assistant", said or None, tool_calls=tuple(made)))
            messages += [
                ChatMessage("tool", text, name=c.name, tool_call_id=c.id)
                for c, text in zip(made, results, strict=True)
            ]
            rounds_done += 1
            yield ""  # the calls ran: a stream sends their thoughts now
            gen = await self._open_round(list(messages), self.tools.choice_for(rounds_done))
            self.gens.append(gen)

    async def _run(self, call: ToolCall, said: str) -> tuple[str, dict[str, Any]]:
        """One call: its observation (the plugin's text, or ``{"error": …}``) and thought."""
        tool = self.tools.tools.get(call.name)
        try:
            shown: Any = json.loads(call.arguments or "{}")
        except ValueError:
            shown = call.arguments
        if tool is None:
            text = _error(f"There is no tool named '{call.name[:64]}'.")
        elif (problem := argument_problem(visible_schema(tool), shown)) is not None:
            text = _error(f"Invalid arguments for '{tool.name}': {problem}.")
        else:
            own = {k: v for k, v in shown.items() if k not in tool.user_params}
            arguments = {**own, **self.tools.user_values.get(tool.name, {})}
            token = self.tools.tokens.get(tool.name)
            result = await self._caller.call(tool, arguments, token, app_id=self.tools.app_id)
            text = result.text
        thought = {
            "thought": f"Called the plugin '{call.name}'.",
            "action_type": "api",
            "action_name": call.name,
            "action": "plugin",
            "action_input": shown,
            "observation": _shown(text),
            "response": said,
        }
        return text, thought


def _error(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False, separators=(",", ":"))


def next_request(
    first: InferenceRequest, request_id: str, messages: list[ChatMessage], choice: ToolChoice
) -> InferenceRequest:
    """A later round's request: the first's model, sampling and tools, a new id, the
    conversation so far and the round's tool choice."""
    return replace(
        first,
        request_id=request_id,
        messages=messages,
        tool_choice=choice,
        routing=None,
        trace_headers=None,
        prefix_fingerprint=(),
    )


__all__ = [
    "MAX_OBSERVATION_CHARS",
    "THOUGHT_BYTES",
    "ToolRounds",
    "ToolSet",
    "argument_problem",
    "next_request",
    "observation",
    "tool_set",
    "with_tools",
]
