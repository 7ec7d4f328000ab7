"""Probe backends: ways of watching containerd run. All emit harness.probes.events."""
