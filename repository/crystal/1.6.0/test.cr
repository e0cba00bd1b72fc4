STDIN.gets_to_end
puts ["O", "K"].join
