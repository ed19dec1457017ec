"""Disease trajectories: model scores of a patient's scans over time (seed 003's s(t))."""
