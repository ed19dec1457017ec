"""The case library: an on-disk store of de-identified patients, studies and images."""
