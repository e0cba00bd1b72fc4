input=$(cat)
parts=(O K)
print -r -- "${(j::)parts}"
