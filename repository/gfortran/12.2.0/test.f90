program hello
    implicit none
    character(len=1) :: a, b
    a = 'O'
    b = 'K'
    print '(A)', a // b
end program hello
