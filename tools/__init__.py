"""The command line and the tools on top of the pipeline: run, predict, pretrain,
calibrate, demo data, run summary."""
