#lang racket/base
(void (read-line))
(displayln (string-append "O" "K"))
