"""The daemon connection (like docker-py's docker/api): endpoint, engine facts, proxy, streams, pulls. See docs/architecture.md."""
