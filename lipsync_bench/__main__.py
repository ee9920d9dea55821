"""``python -m lipsync_bench``: the command line."""
from .cli import main

main(prog_name="lipsync-bench")
