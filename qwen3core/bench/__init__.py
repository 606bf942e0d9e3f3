"""``qwen3 bench``: backend combinations side by side, each measured in its own process."""
