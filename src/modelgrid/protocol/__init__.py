"""Wire protocols (OpenAI, DashScope): request/response models and converters; no I/O."""
