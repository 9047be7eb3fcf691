"""DashScope's native text-generation API wire format.

Reference: https://help.aliyun.com/zh/model-studio/qwen-api-reference (the DashScope
``POST /api/v1/services/aigc/text-generation/generation`` request, response and SSE stream) and
https://help.aliyun.com/zh/dashscope/response-status-codes (error codes).
"""
