"""Synthetic testbeds with known scores, run as real ComfyUI models (see ``benchmarks.known_score``)."""
