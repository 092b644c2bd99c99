"""Reports: tables, paired statistics and plots from what runs wrote (JSON in, markdown / CSV / PNG out)."""
