"""Training: the TTT objective, the loop, resume, distributed data parallelism and offline features."""
