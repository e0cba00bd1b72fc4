import sys

data = sys.stdin.read()
args = sys.argv[1:]
if isinstance(data, str) and isinstance(args, list):
    print("OK")
