"""The OpenAI API wire format (https://platform.openai.com/docs/api-reference/chat)."""
