set data [read stdin]
set parts [list O K]
puts [join $parts ""]
