"""How a stage runs: two backends (one engine, Swarm) behind one interface, the session that builds them, the lease. See docs/architecture.md."""
