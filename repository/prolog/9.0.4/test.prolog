:- initialization(main).

main :-
    atom_concat('O', 'K', X),
    write(X), nl,
    halt.
