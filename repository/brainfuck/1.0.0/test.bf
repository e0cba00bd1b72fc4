Prints OK and a newline: 79 75 10
++++++++[>++++++++++<-]>-.    80 minus 1 = 79 (O)
----.                         75 (K)
[-]++++++++++.                10 (newline)
