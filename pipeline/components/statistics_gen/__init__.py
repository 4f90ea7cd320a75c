"""The local StatisticsGen: TFX's StatisticsGen without dependency packaging on the DirectRunner."""
