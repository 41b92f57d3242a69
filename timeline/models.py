"""Per-contact timeline events (arrive with the timeline capability)."""
