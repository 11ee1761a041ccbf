"""ExampleGens over image folders, TFRecords and unlabeled folders, and their ingestion."""
