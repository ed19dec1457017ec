"""Model architectures, the manifest-backed registry and device selection."""
