my $input = $*IN.slurp;
say <O K>.join;
