"""The selection report: what was kept against what was in the pool, and why."""
