a$ = "O"
b$ = "K"
print a$ + b$
