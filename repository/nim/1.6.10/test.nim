import strutils
discard stdin.readAll()
echo ["O", "K"].join("")
