"""Regression checks across containerd versions: verdicts, comparison, matrix, baselines, bisect."""
