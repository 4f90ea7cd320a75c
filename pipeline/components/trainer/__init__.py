"""The PeterRec Trainer: TFX's Trainer that also hands Vocabulary artifacts to the run_fn."""
