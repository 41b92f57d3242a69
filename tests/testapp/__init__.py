"""A test-only app: processors that record every execution, for the engine's tests."""
