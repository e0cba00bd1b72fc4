# Arguments are awk's: input files or assignments. This program takes them as data and reads stdin.
BEGIN { s = "O"; for (i = 1; i < ARGC; i++) delete ARGV[i] }
{ n++ }
END { print s "K" }
