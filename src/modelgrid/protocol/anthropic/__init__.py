"""Anthropic's Messages API wire format.

References: https://docs.anthropic.com/en/api/messages (the request and the ``message``
object), https://docs.anthropic.com/en/api/messages-count-tokens,
https://docs.anthropic.com/en/docs/build-with-claude/streaming (the SSE events) and
https://docs.anthropic.com/en/api/errors (error types and shape).
"""
