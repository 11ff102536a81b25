"""Atoms-style agent SDK: events, nodes and the AgentSession graph. Pure asyncio, no I/O."""
