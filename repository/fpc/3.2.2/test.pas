program Hello;
var
    s: string;
begin
    s := 'O';
    writeln(s + 'K');
end.
