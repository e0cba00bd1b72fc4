System.in.text
println(["O", "K"].join(""))
