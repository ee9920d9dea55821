"""A decoding process (``media.DecodeLimits.isolated``): ``python -m lipsync_bench.decode_worker IN OUT`` serves
requests read from file descriptor IN and replies on OUT until IN closes."""
import sys
from multiprocessing.connection import Connection

from lipsync_bench.media import serve

if __name__ == "__main__":
    serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))
