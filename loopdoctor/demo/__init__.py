"""The demo: the reference ticket trainer, the faults ``loopdoctor triage`` injects into it, and
its plots. It is ordinary user code for the runtime half, kept apart from the product."""
