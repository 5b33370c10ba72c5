"""Model families: one module per family (``gpt2``, ``llama``, ``bert``), each registering a ``Family`` with
its builder, Hugging Face config mapping, tensor-name rules and linear slices. A new family (T5, a mixture of
experts) is a new module here that calls ``register``, plus its import line in ``lmstack/model/__init__.py``.
"""

from lmstack.model.registry import (Family, LinearSlice, Rule, build_model, family_for_hf, family_of, get_family,
                                    linear_slices, names, register)


__all__ = ["Family", "LinearSlice", "Rule", "build_model", "family_for_hf", "family_of", "get_family",
           "linear_slices", "names", "register"]
