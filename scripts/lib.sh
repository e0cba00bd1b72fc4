# Shared by the scripts in this directory: `. scripts/lib.sh` after `cd` to the repository root.

# A step's heading, on stderr.
step() { printf '\n==> %s\n' "$*" >&2; }

# Exits with an error unless running as root; $1 says what needs it.
require_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "error: $0 needs root ($1)" >&2
    echo "hint: run it again with sudo (or as root in a VM or container with loop devices)" >&2
    exit 1
  fi
}
