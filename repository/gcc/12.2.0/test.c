#include <math.h>
#include <stdio.h>

int main(int argc, char **argv) {
    char line[64];
    (void)argv;
    if (fgets(line, sizeof line, stdin) == NULL) line[0] = 0;
    if (argc >= 1 && sqrt(4.0) == 2.0) puts("OK");
    return 0;
}
