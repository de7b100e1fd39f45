"""The exit status of every loopdoctor command, as ruff's: 0 nothing found, 1 findings, 2 a usage,
configuration or I/O error."""

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED = 130  # as a shell reports SIGINT
