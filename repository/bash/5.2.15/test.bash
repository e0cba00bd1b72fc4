words=()
for w in O K; do words+=("$w"); done
printf '%s%s\n' "${words[@]}"
