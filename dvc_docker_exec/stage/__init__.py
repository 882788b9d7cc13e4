"""What one stage gets: its settings, what the repository may ask for, its mount facts, its config copies. See docs/architecture.md."""
