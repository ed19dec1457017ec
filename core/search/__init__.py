"""Similar-case search: vector indexes over L2-normalised embeddings (cosine similarity)."""
