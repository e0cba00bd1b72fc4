use strict;
use warnings;
use List::Util qw(sum);
my @lines = <STDIN>;
print "OK\n" if sum(1, 2) == 3;
