"""Storage: Parquet reading and writing and atomic files. Imports nothing above `curate.schema`."""
