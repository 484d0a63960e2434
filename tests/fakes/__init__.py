"""HTTP-level fakes of servers that cannot run here (the real client libraries talk to them)."""
