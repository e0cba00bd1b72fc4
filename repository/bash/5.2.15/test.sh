input=$(cat)
args=("$@")
[ "${#args[@]}" -ge 0 ] && [ "${#input}" -ge 0 ] && echo OK
