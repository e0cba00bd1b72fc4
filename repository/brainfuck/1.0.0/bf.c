/* Brainfuck interpreter: bf FILE. 65536 wrapping 8-bit cells (the pointer wraps too);
   ',' at end of input leaves the cell unchanged. Exit status 1 on unbalanced brackets. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: bf FILE\n"); return 2; }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    size_t cap = 4096, n = 0;
    char *code = malloc(cap);
    int c;
    while ((c = fgetc(f)) != EOF) {
        if (c == '+' || c == '-' || c == '<' || c == '>' || c == '.' || c == ',' || c == '[' || c == ']') {
            if (n == cap) { cap *= 2; code = realloc(code, cap); }
            code[n++] = (char)c;
        }
    }
    fclose(f);
    size_t *jump = malloc((n + 1) * sizeof *jump), *stack = malloc((n + 1) * sizeof *stack), sp = 0;
    for (size_t i = 0; i < n; i++) {
        if (code[i] == '[') stack[sp++] = i;
        else if (code[i] == ']') {
            if (sp == 0) { fprintf(stderr, "unbalanced ']' at instruction %zu\n", i); return 1; }
            size_t j = stack[--sp];
            jump[i] = j;
            jump[j] = i;
        }
    }
    if (sp != 0) { fprintf(stderr, "unbalanced '['\n"); return 1; }
    static unsigned char tape[65536];
    unsigned short p = 0;
    for (size_t i = 0; i < n; i++) {
        switch (code[i]) {
        case '+': tape[p]++; break;
        case '-': tape[p]--; break;
        case '>': p++; break;
        case '<': p--; break;
        case '.': putchar(tape[p]); break;
        case ',': if ((c = getchar()) != EOF) tape[p] = (unsigned char)c; break;
        case '[': if (!tape[p]) i = jump[i]; break;
        case ']': if (tape[p]) i = jump[i]; break;
        }
    }
    fflush(stdout);
    return 0;
}
