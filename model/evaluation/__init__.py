"""Evaluation: metrics, image similarity, realism features, the evaluate command and figures."""
