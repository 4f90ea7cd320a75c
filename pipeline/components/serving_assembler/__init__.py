"""The serving-model assembler: one multi-signature SavedModel of the blessed tasks."""
