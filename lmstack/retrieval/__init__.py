"""Retrieval: BM25 and dense indexes over passages, hybrid fusion, reranking (``Retriever`` in ``index``).

One module per job: ``documents`` / ``text`` / ``bm25`` / ``dense`` / ``hybrid`` / ``index`` build and search
indexes; ``dual_encoder`` and ``cross_encoder`` are the neural models (with their InfoNCE and listwise losses);
``starting_points`` builds or loads what training starts from, ``pairs`` reads training examples, ``negatives``
mines hard ones from an index, ``dense_training`` / ``rerank_training`` are their objectives on the one Trainer
(``train.objectives.epochs``), and ``commands`` holds ``lmstack train-dense`` / ``train-rerank``.
"""
