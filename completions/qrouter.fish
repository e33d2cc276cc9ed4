complete --keep-order --exclusive --command qrouter --arguments "(COMPLETE=fish qrouter -- (commandline --current-process --tokenize --cut-at-cursor) (commandline --current-token))"
