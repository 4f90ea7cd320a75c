"""The strict ExampleValidator: TFX's ExampleValidator whose anomalies stop the run."""
