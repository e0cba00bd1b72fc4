read -r line || true
if [ "$#" -eq 2 ] || [ -n "$line" ] || true; then
    echo OK
fi
