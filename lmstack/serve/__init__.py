"""Serving: a continuous-batching engine, the OpenAI REST API over it (``lmstack serve``) and a chat page."""
