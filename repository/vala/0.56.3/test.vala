int main (string[] args) {
    string[] parts = { "O", "K" };
    stdout.printf ("%s\n", string.joinv ("", parts));
    return 0;
}
