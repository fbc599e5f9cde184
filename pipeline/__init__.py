"""Documents as Arrow record batches: schema, readers, writers, stages, executors and the CLI."""
