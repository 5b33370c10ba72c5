"""The terminal chat and its tools (calculator, search); conversations are rendered by ``lmstack.text``."""
