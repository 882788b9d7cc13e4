"""Value objects, no daemon connection (like docker-py's docker/types): the container spec, the mount plan, identities. See docs/architecture.md."""
