"""What a stage must not reach or change: daemon sockets, host paths, private files, tamper checks. See docs/architecture.md."""
