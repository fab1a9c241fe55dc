"""One module per sub-command, each exposing ``register(subparsers)``; cli.py finds them all."""
