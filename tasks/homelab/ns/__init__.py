"""Invoke namespaces, one module each; ``root`` assembles them."""
