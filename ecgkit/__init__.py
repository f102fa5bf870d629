"""ecgkit."""
