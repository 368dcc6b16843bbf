"""Evaluation of trained workdirs: pretext metrics (depth, RGB), PNG panels."""
