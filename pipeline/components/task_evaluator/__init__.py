"""The task evaluator: one fine-tuned task against its baseline, and its blessing."""
