: hello ( -- ) ." OK" cr ;
hello
