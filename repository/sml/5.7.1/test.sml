val _ = TextIO.inputAll TextIO.stdIn;
val _ = print (String.concat ["O", "K"] ^ "\n");
