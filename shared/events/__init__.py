"""Token lifecycle events, written in the caller's transaction (the outbox)."""
