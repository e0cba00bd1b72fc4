(slurp *in*)
(println (apply str ["O" "K"]))
