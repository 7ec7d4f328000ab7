"""Probe backends: ways of watching containerd run. All emit harness.probes.events."""

# How a run can watch containerd. "state" only reads what the daemon stored and the runtime
# got (a stage map); the others watch functions and localize drops.
PROBE_BACKENDS = ("delve", "gdb", "gotrace")
BACKENDS = ("state", *PROBE_BACKENDS)
