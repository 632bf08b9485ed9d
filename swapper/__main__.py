import sys

try:
    from swapper.cli import console
except KeyboardInterrupt:  # interrupted while starting: one line, never a traceback
    print("swapper: interrupted", file=sys.stderr)
    sys.exit(130)

console()
