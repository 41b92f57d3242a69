"""The insight rules: pure functions from facts (insights.selectors) to Candidates."""
