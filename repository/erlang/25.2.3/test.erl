%% escript skips the first line of its file
-module(test).
-export([main/1]).

main(_Args) ->
    _ = io:get_line(""),
    io:format("~s~n", [lists:concat(["O", "K"])]).
