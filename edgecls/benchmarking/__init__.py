"""The benchmark harness behind ``edgecls bench``: latency, memory and accuracy per model and runtime,
device rows imported from ``pi_infer.py --bench``, and the report (table, JSON, CSV, PNG)."""
