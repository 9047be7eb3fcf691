"""Wire protocols (OpenAI, DashScope): request/response models and converters; no I/O."""

MAX_MESSAGES = 2048
"""The most messages (or input items) one chat-like request may carry, on every protocol:
OpenAI's own limit for chat completions' ``messages``. Rendering a chat template over tens of
thousands of tiny messages costs the engine seconds before it can refuse the prompt as too
long, so the wire refuses such a list first."""

__all__ = ["MAX_MESSAGES"]
