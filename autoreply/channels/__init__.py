"""Chat channel adapters: parse and verify inbound requests, send replies."""
