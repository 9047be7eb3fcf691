"""The prompts the engine benchmarks generate from (``engine_overhead.py``,
``llama_build.py``): chat requests of the kinds a coding model answers, 60-150 tokens each."""

PROMPTS = [
    "Write a Python function that checks whether a string is a palindrome, with a docstring.",
    "Explain the difference between a process and a thread in about 150 words.",
    "Write a SQL query returning the ten customers with the highest total order value.",
    "Implement binary search in JavaScript and explain its time complexity.",
]
