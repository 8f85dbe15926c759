"""`spoofwatch` subcommands that talk to a running daemon (each exposes `main(argv) -> int`)."""
