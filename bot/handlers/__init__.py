"""HTTP handlers: thin adapters from a request to a use case and back."""
