"""The delve backend: headless delve over JSON-RPC (rpc.py), driven by backend.py."""
