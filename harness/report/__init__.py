"""Reports: the --json document, the stage-map table, report.md. They only format."""
