"""Retrieval: BM25 and dense indexes over passages, hybrid fusion, reranking (``Retriever`` in ``index``)."""
