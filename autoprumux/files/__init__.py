"""Files: results and throughput tables (CSV, JSON, Parquet; pandas is imported only here,
and only for Parquet or a written CSV) and every file written by rename."""
