"""Whole-system reliability runs (issue "Reliability and scale-out, measured"): kill -9 during
every stage, a Postgres restart, a Google fault storm, two hosts, load and fairness, fuzzing.
Each is marked `slow` and `chaos`, prints its figures, and the figures are recorded in
docs/OPERATIONS.md."""
