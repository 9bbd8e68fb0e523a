"""Signaling: the server that introduces peers, and (next) the client that peers use."""
