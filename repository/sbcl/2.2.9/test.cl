(read-line *standard-input* nil)
(format t "~a~a~%" "O" "K")
