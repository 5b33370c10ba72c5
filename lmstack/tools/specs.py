"""The OpenAI-style function specs (name, description, JSON-schema parameters) of the built-in tools."""

CALCULATOR_SPEC = {
    "name": "calculator",
    "description": "Evaluate an arithmetic expression, e.g. 12 * (3 + 4).",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
}
SEARCH_SPEC = {
    "name": "search",
    "description": "Search passages about people, places and restaurants.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
}
