"""Domain-free helpers. Nothing here imports from the server or client features."""
