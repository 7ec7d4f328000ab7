"""Scenario files and the OCI image layouts the harness writes for them."""
