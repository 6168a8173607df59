"""Local model bootstrap: a tiny Qwen2-architecture policy and its tokenizer (no hub)."""
