"""The root tasks: up, down, status and doctor across every layer."""
