"""lmstack: the whole life of a language model as readable software."""

__version__ = "0.1.0"
