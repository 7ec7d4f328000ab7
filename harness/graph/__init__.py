"""Events -> call graph (networkx) -> per-sentinel localization of the drop point."""
