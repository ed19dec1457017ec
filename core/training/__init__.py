"""Training commands: data sources, splits, loops, and the manifest entries they write."""
