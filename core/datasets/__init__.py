"""Dataset readers and splits: what a training or evaluation run reads, and how it keeps a patient on one side."""
