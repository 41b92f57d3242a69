"""Pure functions turning Gmail and Calendar API resources into interactions (no Django needed)."""
