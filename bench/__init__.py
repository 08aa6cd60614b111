"""Side-by-side benchmark of the engine against floors on the same machine, broker and settings.

Run `python -m bench.run`; see bench/README.md. Every figure is printed as a ratio
to a floor measured in the same run, because absolute times on a shared machine
say little on their own.
"""
