"""lossdsl."""
