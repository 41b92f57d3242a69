"""A separate minimal host project: its own settings and URLconf, with only our apps added."""
