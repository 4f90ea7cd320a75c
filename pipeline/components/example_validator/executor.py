"""``StrictExampleValidatorExecutor``: TFX's ExampleValidator executor that fails on anomalies."""

import os
from typing import Any, Dict, List, Mapping

from tfx.components.example_validator import executor as example_validator_executor

from peterrec.pipeline.components.common import single


class DataAnomalyError(RuntimeError):
    """ExampleValidator found anomalies: the message lists them (split, feature, description)."""


def describe_anomalies(anomalies_by_split: Mapping[str, Any]) -> List[str]:
    """One line per anomaly: ``split 'eval': feature 'timestamps': Column dropped (...)``."""
    lines = []
    for split, anomalies in sorted(anomalies_by_split.items()):
        for feature, info in sorted(anomalies.anomaly_info.items()):
            reasons = "; ".join(f"{r.short_description} ({r.description})" for r in info.reason) or \
                info.short_description
            lines.append(f"split {split!r}: feature {feature!r}: {reasons}")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            reasons = "; ".join(f"{r.short_description} ({r.description})" for r in info.reason)
            lines.append(f"split {split!r}: data set: {reasons or info.short_description}")
    return lines


class StrictExampleValidatorExecutor(example_validator_executor.Executor):
    """ExampleValidator that fails the run, naming each anomaly, when the data breaks the schema.

    TFX's ExampleValidator only records anomalies (and a ``blessed`` property per split);
    this executor records them the same way and then raises ``DataAnomalyError``, so the
    components after it (pretraining first) never run on bad data.
    """

    def _Validate(self, inputs, outputs):  # pylint: disable=invalid-name
        anomalies = super()._Validate(inputs, outputs)
        split_uri = outputs[example_validator_executor.labels.SCHEMA_DIFF_PATH]
        split = os.path.basename(os.path.normpath(split_uri))
        split = split[len("Split-"):] if split.startswith("Split-") else split
        self._found[split] = anomalies
        return anomalies

    def Do(self, input_dict, output_dict, exec_properties):  # pylint: disable=invalid-name
        """Validates every split, then raises DataAnomalyError if any has anomalies."""
        self._found: Dict[str, Any] = {}
        result = super().Do(input_dict, output_dict, exec_properties)
        bad = {split: a for split, a in self._found.items()
               if a.anomaly_info or a.HasField("dataset_anomaly_info")}
        if bad:
            anomalies_uri = single(output_dict["anomalies"], "anomalies").uri
            lines = describe_anomalies(bad)
            raise DataAnomalyError(
                f"ExampleValidator found {len(lines)} anomal{'y' if len(lines) == 1 else 'ies'} in the examples "
                f"against the schema; the pipeline stops before training:\n  " + "\n  ".join(lines) +
                f"\n(anomalies written to {anomalies_uri})")
        return result
