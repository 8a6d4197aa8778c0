"""Head-to-head benchmark runs, tables and reports (``python -m fastres.bench``)."""
