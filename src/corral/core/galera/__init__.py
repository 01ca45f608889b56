"""Galera's pure cores: the shared state types (:mod:`.state`), the parsers of a node's files
(:mod:`.files`), who bootstraps and who joins (:mod:`.bootstrap`), the one writer HAProxy
sends writes to (:mod:`.writer`) and the group-communication timeouts derived from corral's
timing profile (:mod:`.evs`). No I/O: the driver reads the files, the controller the store."""
