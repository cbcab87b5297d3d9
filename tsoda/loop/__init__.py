"""TSODA, the loop: rounds, journal, acceptance thresholds, report, the real adapters."""
