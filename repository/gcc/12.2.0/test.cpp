#include <iostream>
#include <string>
#include <vector>

int main() {
    std::vector<std::string> parts{"O", "K"};
    std::string out;
    for (const auto &p : parts) out += p;
    std::cout << out << std::endl;
}
